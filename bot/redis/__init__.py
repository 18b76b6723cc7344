"""Redis adapter: release state, leases and the shared clock; built by the entry points."""
