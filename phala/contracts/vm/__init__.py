"""Contracts in a real VM: CPython compiled to WebAssembly, run under wasmtime with fuel.

* :mod:`.build`: builds the runtime component (CPython, the SDK, :mod:`.guest`) from pinned
  versions, reproducibly, and caches its compiled form; its hash is the runtime identity.
* :mod:`.engine`: instantiates it with only the host functions a contract may use, counts
  fuel, and turns traps into outcomes.
* :mod:`.guest`: the code that runs inside the component.
"""
