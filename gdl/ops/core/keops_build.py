"""KeOps builds that are safe for concurrent processes and that heal when a cached build is broken.

pykeops 2.3 compiles each new formula on its first use, into a cache folder shared by every process
of the user: keopscore writes ``<tag>.cpp`` then ``<tag>.nfo``, pykeops writes
``pykeops_cpp_<tag>.cpp`` and compiles it with ``-o pykeops_cpp_<tag><ext>`` straight into the
folder, and both remember formulas in pickles written at exit. Nothing is locked and nothing is
written atomically, and a file that exists is trusted: a process that loads a formula while another
is still compiling it fails with ``file too short``, and a build interrupted half-way (Ctrl-C, a
kill) leaves a file that fails every later process the same way.

:func:`import_pykeops_safely` (called by :func:`gdl.ops.core.backend.import_pykeops`) makes every build
gdl triggers safe:

- one inter-process lock per cache folder (``<cache>/gdl-keops-build.lock``) is held while pykeops
  is imported (it may compile its GPU binders then) and while a formula is looked up, generated,
  compiled and loaded for the first time in a process; later calls of a loaded formula take no lock;
- the compiled module is written under a temporary name and renamed into place, so no process ever
  sees half a module, and an interrupted compile leaves nothing under the final name;
- the formula pickles are written atomically (temporary file, then rename);
- a cached build that fails to load or to generate (truncated, corrupt, half-deleted) is removed with
  every file of its formula, forgotten by pykeops' in-memory caches and rebuilt once, under the lock;
  a corrupt pickle or a truncated GPU binder found at import is removed and rebuilt by pykeops.

Independent processes and the ranks of a distributed run are alike to this scheme: they share the
cache folder, and each formula is compiled once, by whichever process needs it first.
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import struct
import subprocess
import sys
import sysconfig
import threading
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from filelock import FileLock

LOCK_NAME = "gdl-keops-build.lock"

_touched = threading.local()  # tags of the formulas met by the build in progress in this thread
_locks: dict[str, FileLock] = {}
_installed = False


def keops_cache_folder() -> Path:
    """The folder KeOps builds into: ``KEOPS_CACHE_FOLDER``, else ``~/.cache/keops<version>``."""
    folder = os.environ.get("KEOPS_CACHE_FOLDER")
    if folder:
        return Path(folder)
    try:
        keops_version = version("keopscore")
    except PackageNotFoundError:
        keops_version = ""
    return Path.home() / ".cache" / f"keops{keops_version}"


def build_lock() -> FileLock:
    """The inter-process lock that serialises KeOps builds in the current cache folder."""
    folder = keops_cache_folder()
    path = str(folder / LOCK_NAME)
    if path not in _locks:
        folder.mkdir(parents=True, exist_ok=True)
        _locks[path] = FileLock(path)  # reentrant within a thread, exclusive across threads
    return _locks[path]


def elf_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an ELF file at least as long as its own headers say it is.

    A file cut short by an interrupted write ends before its section header table or before the
    end of a segment: loading it fails with ``file too short``, or crashes the process with a bus
    error when the missing part of a mapped segment is touched.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if len(data) < 52 or data[:4] != b"\x7fELF":
        return False
    order = "<" if data[5] == 1 else ">"
    wide = data[4] == 2  # 64-bit
    if wide and len(data) < 64:
        return False
    phoff, shoff = struct.unpack_from(order + ("QQ" if wide else "II"), data, 0x20 if wide else 0x1C)
    phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", data, 0x36 if wide else 0x2A)
    needed = max(shoff + shentsize * shnum, phoff + phentsize * phnum)
    if len(data) < needed:
        return False
    field = order + ("Q" if wide else "I")
    for k in range(phnum):  # every segment (offset, size in file) lies inside the file
        entry = phoff + k * phentsize
        (offset,) = struct.unpack_from(field, data, entry + (0x08 if wide else 0x04))
        (filesz,) = struct.unpack_from(field, data, entry + (0x20 if wide else 0x10))
        needed = max(needed, offset + filesz)
    return len(data) >= needed


def _remove_broken_shared_state(folder: Path) -> None:
    """Delete unreadable formula pickles and truncated GPU binders; pykeops rebuilds both."""
    for cache in folder.glob("*/*_cache.pkl"):
        try:
            with cache.open("rb") as handle:
                pickle.load(handle)
        except Exception:
            _warn(f"removing the unreadable KeOps cache file {cache}")
            cache.unlink(missing_ok=True)
    for pattern in ("*/nvrtc_jit*.so", "*/pykeops_nvrtc*.so"):
        for binary in folder.glob(pattern):
            if not elf_complete(binary):
                _warn(f"removing the truncated KeOps binary {binary}")
                binary.unlink(missing_ok=True)


def _warn(message: str) -> None:
    warnings.warn(f"gdl.ops: {message}", RuntimeWarning, stacklevel=3)


def _touch(tag: str) -> None:
    tags = getattr(_touched, "tags", None)
    if tags is not None:
        tags.add(tag)


def _save_atomically(cache) -> None:
    """pykeops' ``save_cache``, written to a temporary file and renamed into place."""
    library = cache.library_params if hasattr(cache, "library_params") else cache.library
    partial = f"{cache.cache_file}.{os.getpid()}.partial"
    try:
        with open(partial, "wb") as handle:
            pickle.dump(library, handle)
        os.replace(partial, cache.cache_file)
    except OSError:
        Path(partial).unlink(missing_ok=True)


def _compile_cpp_binder(self) -> None:
    """pykeops' ``init_phase1`` for CPU formulas, with the module written under a temporary name."""
    import pykeops.config as config
    from pykeops.config import pykeops_cpp_name, python_includes

    tag = self.params.tag
    _touch(tag)
    module = pykeops_cpp_name(tag=tag, extension=sysconfig.get_config_var("EXT_SUFFIX"))
    if os.path.exists(module):
        return
    source = pykeops_cpp_name(tag=tag, extension=".cpp")
    with open(source, "w") as handle:
        handle.write(self.get_pybind11_code())
    partial = f"{module}.{os.getpid()}.partial"
    base = config.pykeops_base
    command = f"{base.get_cxx_compiler()} {base.get_cpp_flags()} {python_includes} {source} -o {partial}"
    done = subprocess.run(command, shell=True, capture_output=True, text=True)
    if done.returncode != 0 or not os.path.exists(partial):
        Path(partial).unlink(missing_ok=True)
        raise RuntimeError(f"compiling the KeOps formula {tag} failed: {done.stderr.strip()[-2000:]}")
    os.replace(partial, module)
    importlib.invalidate_caches()


def _recording(method):
    def recorded(self, *args, **kwargs):
        _touch(self.params.tag)
        return method(self, *args, **kwargs)

    return recorded


def _checked_cpp_load(load):
    """pykeops' ``init_phase2`` for CPU formulas, refusing a truncated module before it is mapped."""

    def checked(self):
        from pykeops.config import pykeops_cpp_name

        _touch(self.params.tag)
        module = pykeops_cpp_name(tag=self.params.tag, extension=sysconfig.get_config_var("EXT_SUFFIX"))
        if not elf_complete(module):
            raise ImportError(f"the KeOps module {module} is missing or truncated")
        return load(self)

    return checked


class _SafeBinder:
    """A pykeops binder (``keops_binder["cpp"]`` or ``["nvrtc"]``) whose first call of each
    formula runs under the build lock, and which rebuilds a formula whose cached build is broken."""

    def __init__(self, binder):
        self.binder = binder

    def __getattr__(self, name):
        return getattr(self.binder, name)

    def __call__(self, *args):
        from keopscore.utils.Cache import env_param

        key = "".join(str(arg) for arg in args) + str(env_param)
        loaded = self.binder.library.get(key)
        if loaded is not None:
            return loaded
        with build_lock():
            _touched.tags = set()
            try:
                return self.binder(*args)
            except Exception as error:
                tags = _touched.tags
                if not tags:
                    raise
                _warn(f"the cached KeOps build of formula(s) {sorted(tags)} is unusable ({error}); rebuilding")
                self._forget(tags)
                _touched.tags = set()
                return self.binder(*args)
            finally:
                _touched.tags = None

    def _forget(self, tags: set[str]) -> None:
        """Delete every file of the formulas ``tags`` and drop them from pykeops' caches."""
        from keopscore.config import config
        from keopscore.get_keops_dll import get_keops_dll

        folder = Path(config.get_build_folder())
        for tag in tags:
            for path in folder.glob(f"*{tag}*"):
                path.unlink(missing_ok=True)
        for library in (get_keops_dll.library,):
            for key in [key for key, value in library.items() if value[0] in tags]:
                del library[key]
        for library in (self.binder.library, self.binder.library_params):
            for key in [key for key, value in library.items() if _tag_of(value) in tags]:
                del library[key]
        importlib.invalidate_caches()


def _tag_of(entry) -> str | None:
    params = getattr(entry, "params", entry)
    return getattr(params, "tag", None)


def _install() -> None:
    """Route pykeops' builds through the lock, the atomic writes and the rebuild of broken builds."""
    global _installed
    from keopscore.binders.LinkCompile import LinkCompile
    from keopscore.get_keops_dll import get_keops_dll
    from pykeops.common import keops_io
    from pykeops.common.keops_io.LoadKeOps_cpp import LoadKeOps_cpp_class

    generate = LinkCompile.__init__

    def recorded_link_compile(self, *args, **kwargs):
        generate(self, *args, **kwargs)
        _touch(self.gencode_filename)

    LinkCompile.__init__ = recorded_link_compile
    LoadKeOps_cpp_class.init_phase1 = _compile_cpp_binder
    LoadKeOps_cpp_class.init_phase2 = _checked_cpp_load(LoadKeOps_cpp_class.init_phase2)
    if "nvrtc" in keops_io.keops_binder:
        from pykeops.common.keops_io.LoadKeOps_nvrtc import LoadKeOps_nvrtc_class

        LoadKeOps_nvrtc_class.init_phase2 = _recording(LoadKeOps_nvrtc_class.init_phase2)
    caches = [get_keops_dll, *keops_io.keops_binder.values()]
    for cache in caches:
        if cache.use_cache_file:
            atexit.unregister(cache.save_cache)
            atexit.register(_save_atomically, cache)
    for name, binder in list(keops_io.keops_binder.items()):
        keops_io.keops_binder[name] = _SafeBinder(binder)
    _installed = True


def import_pykeops_safely():
    """Import ``pykeops.torch`` under the build lock, after clearing broken shared files, and
    make its formula builds safe (once per process). Returns ``pykeops.torch``."""
    if _installed:
        import pykeops.torch

        return pykeops.torch
    with build_lock():
        if "pykeops" not in sys.modules:
            _remove_broken_shared_state(keops_cache_folder())
        import pykeops.torch

        if not _installed:
            _install()
    return pykeops.torch
