"""The only code that talks to LAMMPS: open an instance, cool a system, run a replica."""
