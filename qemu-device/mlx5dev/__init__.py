"""mlx5dev: an emulated ConnectX (mlx5) PCI function served over vfio-user.

Data path, outermost first:
    guest access -> vfio_user (transport) -> pci (PCI function) -> mlx5 (device model) -> mlx5.handlers
"""
