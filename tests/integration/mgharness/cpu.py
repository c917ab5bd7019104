"""tests/integration/mgharness/cpu.py - CPU seconds of processes, for benchmarks.

Benchmarks print where the CPU went beside their rates (the machine has 2
cores shared by source, client and target), measured from /proc.
"""

import os
import resource


def cpu_seconds(pid):
    """cpu_seconds returns the user+system CPU seconds of pid and its live
    descendants, plus the reaped children of pid itself, so a PostgreSQL
    postmaster counts the backends that already exited."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending, seen = [pid], set()
    while pending:
        p = pending.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            if p == pid:
                total += (int(fields[13]) + int(fields[14])) / tick
            with open(f"/proc/{p}/task/{p}/children") as f:
                pending.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def children_cpu_seconds():
    """children_cpu_seconds returns the CPU seconds of this process's reaped children."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime
