"""Structure layouts of the device interface, declared once as data (see ``..layout``)."""
