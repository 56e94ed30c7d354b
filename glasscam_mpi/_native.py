"""Native libraries in one process: freud's voro++ beside the one LAMMPS bundles (issue 12).

The LAMMPS library (``liblammps.so``) bundles voro++ 0.4.6 and exports it; freud's
``_locality`` module bundles a newer, layout-incompatible voro++ under the same C++ symbol
names, exported too. A library in the global symbol scope wins every lookup, so if
``liblammps.so`` is loaded with ``RTLD_GLOBAL`` (what ``lammps.lammps()`` does) before
freud's module is bound, freud's voro++ calls, vtables and tables resolve into LAMMPS's
copy and ``freud.locality.Voronoi`` dies with SIGSEGV.
:func:`~glasscam_mpi.md.engine.open_lammps` prevents this (it loads ``liblammps.so`` with
``RTLD_LOCAL`` and binds freud first, with :func:`freud_conflict`); :func:`freud_conflict`
also detects the one case left, a LAMMPS instance created with ``lammps.lammps()``
directly before freud was loaded, for the Voronoi functions
(:mod:`glasscam_mpi.analysis.voronoi`) to refuse with a message.

Only the dynamic linker is asked here (``dlopen``, ``dladdr``, ``dlinfo`` of glibc through
ctypes); nothing of freud or LAMMPS is imported.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from pathlib import Path

# voro++ definitions that freud's _locality both exports and uses (a function, a vtable,
# a table): whichever object the global scope resolves them to is the one freud calls.
_VORO_SYMBOLS = ("_ZN4voro16voronoicell_base6volumeEv", "_ZTVN4voro11voronoicellE",
                 "_ZN4voro9voro_base2wlE")
_RTLD_DI_LINKMAP = 2
_freud_bound = False  # set once freud's _locality is known to use its own voro++


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


class _LinkMap(ctypes.Structure):
    pass


# The public head of glibc's struct link_map (<link.h>).
_LinkMap._fields_ = [("l_addr", ctypes.c_void_p), ("l_name", ctypes.c_char_p),
                     ("l_ld", ctypes.c_void_p), ("l_next", ctypes.POINTER(_LinkMap)),
                     ("l_prev", ctypes.POINTER(_LinkMap))]


def _freud_locality_path() -> str | None:
    """Real path of freud's compiled ``_locality`` module, found without importing freud."""
    spec = importlib.util.find_spec("freud")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for lib in sorted(Path(folder).glob("_locality*.so")):
            return os.path.realpath(lib)
    return None


def _global_voro_provider(libc: ctypes.CDLL) -> str | None:
    """Real path of the library the global symbol scope resolves voro++ to, or None."""
    libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    for name in _VORO_SYMBOLS:
        try:
            address = ctypes.addressof(ctypes.c_char.in_dll(libc, name))
        except ValueError:  # not in the global scope
            continue
        info = _DlInfo()
        if libc.dladdr(address, ctypes.byref(info)) and info.dli_fname:
            return os.path.realpath(os.fsdecode(info.dli_fname))
        return f"<unknown library defining {name}>"
    return None


def _load_order(libc: ctypes.CDLL) -> list[str]:
    """Real paths of the loaded shared objects, in the order the dynamic linker loaded them."""
    libc.dlinfo.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    head = ctypes.POINTER(_LinkMap)()
    if libc.dlinfo(libc._handle, _RTLD_DI_LINKMAP, ctypes.byref(head)) != 0:
        return []
    names, node = [], head
    while node:
        name = node.contents.l_name
        names.append(os.path.realpath(os.fsdecode(name)) if name else "")
        node = node.contents.l_next
    return names


def freud_conflict() -> str | None:
    """Whether freud's Voronoi may run in this process; binds freud's voro++ if it can.

    The references of freud's compiled ``_locality`` module to voro++ are bound once,
    when the dynamic linker loads it (``RTLD_NOW``, as Python and this function load it).
    They bind to freud's own voro++ unless another library exporting voro++ (LAMMPS's
    ``liblammps.so`` loaded ``RTLD_GLOBAL``) is in the global symbol scope at that moment.
    So: if no foreign voro++ is global, the module is loaded now if it is not yet (a
    plain ``dlopen``, ~1 ms, no Python import; ``import freud`` later reuses it), which
    makes freud safe for the rest of the process; if one is, freud is safe only if its
    module was loaded before that library. Costs ~0.1 us once it has returned None.

    Returns:
        None if ``freud.locality.Voronoi`` will use freud's own voro++ (or freud is not
        installed: its import then fails on its own); otherwise a message saying which
        library clashes and what to do.
    """
    global _freud_bound
    if _freud_bound or not sys.platform.startswith("linux"):
        return None
    own = _freud_locality_path()
    if own is None:
        return None
    libc = ctypes.CDLL(None)  # dlopen(NULL): the global symbol scope
    foreign = _global_voro_provider(libc)
    if foreign == own:
        foreign = None  # freud itself was loaded RTLD_GLOBAL: its own copy wins anyway
    order = _load_order(libc)
    loaded = own in order
    if foreign is None:
        if not loaded:
            ctypes.CDLL(own, mode=os.RTLD_NOW | os.RTLD_LOCAL)  # bound to its own voro++
        _freud_bound = True
        return None
    if loaded and foreign in order and order.index(own) < order.index(foreign):
        _freud_bound = True  # freud bound its own voro++ before the other library came
        return None
    when = "was loaded after it" if loaded else "would bind to it if loaded now"
    return (f"freud's Voronoi (voro++) cannot run in this process: {foreign} exports an "
            f"incompatible voro++ into the global symbol scope and freud's compiled module "
            f"{when}, so freud.locality.Voronoi would crash (SIGSEGV). This happens when a "
            f"LAMMPS instance is created with lammps.lammps() directly (it loads liblammps "
            f"with RTLD_GLOBAL) before freud is loaded. Open LAMMPS through "
            f"glasscam_mpi.md.engine.open_lammps (RTLD_LOCAL), or import freud (or call "
            f"glasscam_mpi.analysis.voronoi.freud_conflict()) before creating the first "
            f"LAMMPS instance; 2D Voronoi works with backend='delaunay' regardless.")
