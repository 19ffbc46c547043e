"""mlx5lab orchestrator: boots guests around the emulated ConnectX card, drives them, catches panics."""

class Mlx5LabError(Exception):
    """An error the user can act on; the CLI prints its message without a traceback."""
