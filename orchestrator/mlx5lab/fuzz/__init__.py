"""A fuzzer of driver unload ordering, in the style of syzkaller's ``prog/`` and ``pkg/repro``.

A *program* is a short text of operations (guest readers, unload/reload paths, device events, sleeps and a
final wait; the format is version 1 of the mlx5lab program format) that an executor replays in one guest
boot. ``ops`` is the vocabulary (which operations and argument values exist), ``program`` the
representation, its text form and hash, ``generate`` and ``mutate`` make new programs from a seeded
``random.Random``, and ``minimize`` reduces a crashing program to a small reproducer and measures how
often it reproduces. Nothing here boots a guest: the executor and the campaign do.
"""
