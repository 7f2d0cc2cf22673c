"""Workflows: signatures, chains, groups, chords, maps and chunks, and what runs when a step ends.

The user-facing names are exported from :mod:`kq` (``Signature``, ``chain``, ``group``,
``chord``, ``chunks``, ``GroupResult``). The modules, lowest first:

- :mod:`~kq.canvas.wire`: the signature mapping, the options a call carries, failure causes;
- :mod:`~kq.canvas.chords`: counting a chord's header and settling it once;
- :mod:`~kq.canvas.continuation`: what the worker runs when a task ends, and the step API
  primitives build on (``Batch``, ``complete``, ``fail``);
- :mod:`~kq.canvas.signature`, :mod:`~kq.canvas.primitives`, :mod:`~kq.canvas.mapping`: the
  classes; :mod:`~kq.canvas.tasks`: the tasks every worker registers for them.

The first three sit below the task module (the worker's runner imports the continuation), so
this package imports nothing itself.
"""
