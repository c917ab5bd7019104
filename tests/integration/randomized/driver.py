"""tests/integration/randomized/driver.py - seeds -> batches -> failures -> minimal reproductions.

`run_seeds(env, seeds, config)` runs the scenarios of seeds in batches
(harness.run_batch: one migration per batch), attributes every failure to
its seed, shrinks failures to minimal reproductions and returns a Report.

Attribution. A slot fails when the comparer finds a difference in its
databases, or when a migrate command's error names one of its databases
(kind "pipeline_error"). When the migration of a batch breaks as a whole
(init fails, or `sync --follow` dies), the other slots' results mean
nothing: the slots its errors name are run alone, the rest run again as a
new batch; when the errors name nobody, the batch is split in halves.

Shrinking (QuickCheck style, delta debugging over the operation list, then
over the fields of documents and updates): each round runs all candidate
reductions of one failing scenario in ONE batch, keeps the smallest that
still shows the same kind of difference, and stops at a fixed point or at
the time budget. The minimal scenario is run alone at the end to confirm.
"""

import itertools
import json
import os
import re
import time

import bsonx as B
import compare
import gen
import harness
import repro

SEVERITY = ["pipeline_error", "no_target", "missing_collection", "missing_doc", "extra_row",
            "different", "undecodable_row", "key_mismatch", "row_without_id", "orphan_table",
            "collection_failed"]


class Config:
    """Config of a run: generator options, batch size, shrinking, output."""

    def __init__(self, options=None, batch_size=100, shrink=True, shrink_budget=120.0,
                 max_shrinks=4, deadline=None, outdir=None, say=print):
        self.options = options or gen.GenOptions()
        self.batch_size = batch_size
        self.shrink = shrink
        self.shrink_budget = shrink_budget
        self.max_shrinks = max_shrinks
        self.deadline = deadline  # time.monotonic() value: no new batch after it
        self.outdir = outdir
        self.say = say


class Failure:
    """Failure: one seed's differences, the acks behind them, and its minimal reproduction."""

    def __init__(self, seed, scenario, diffs, acks):
        self.seed = seed
        self.scenario = scenario
        self.diffs = diffs
        self.acks = acks
        self.minimal = None  # Scenario
        self.minimal_diffs = None
        self.confirmed = None  # the minimal reproduction failed again alone
        self.repro_path = None

    @property
    def primary(self):
        return primary_kind(self.diffs)

    def to_json(self):
        return {"seed": self.seed, "primary": self.primary, "tags": sorted(self.scenario.tags()),
                "diffs": [_jsonable(d) for d in self.diffs[:20]], "ndiffs": len(self.diffs),
                "minimal_ops": len(self.minimal.ops) if self.minimal else None,
                "confirmed": self.confirmed, "repro": self.repro_path,
                "acks": self.acks[:500],
                "minimal": self.minimal.to_json() if self.minimal else None}


class Report:
    """Report: batches run, seeds run, failures, timings."""

    def __init__(self):
        self.batches = []  # BatchResult.to_json() + seconds
        self.seeds = 0
        self.failures = {}  # seed -> Failure
        self.problems = []  # migrations that did not succeed although no seed differed
        self.started = time.monotonic()

    @property
    def seconds(self):
        return round(time.monotonic() - self.started, 1)

    def to_json(self):
        return {"seeds": self.seeds, "seconds": self.seconds, "batches": self.batches,
                "problems": self.problems,
                "failures": [f.to_json() for f in self.failures.values()]}


def _jsonable(d):
    return {k: (B.show(v, 300) if k == "_id" else v) for k, v in d.items()}


def primary_kind(diffs):
    kinds = {d["kind"] for d in diffs}
    for k in SEVERITY:
        if k in kinds:
            return k
    return next(iter(kinds), None)


# ---- running and attributing ----

def _named_slots(batch, texts):
    """_named_slots: indexes of the batch's slots whose database names occur in texts."""
    pat = re.compile(re.escape(batch.prefix) + r"_(\d+)x?\b")
    found = set()
    for t in texts:
        for m in pat.finditer(t):
            found.add(int(m.group(1)))
    return found


def _error_texts(batch):
    texts = list(batch.notes)
    for name, step in batch.steps.items():
        for k in ("error", "errors"):
            v = step.get(k)
            if isinstance(v, list):
                texts.extend(v)
            elif v:
                texts.append(str(v))
    return texts


def _normalize(text, prefix):
    """_normalize strips names and numbers from an error, so two of one cause compare equal."""
    t = re.sub(re.escape(prefix) + r"_\d+x?", "DB", text)
    t = re.sub(r'"[^"]*"|\'[^\']*\'|\{[^{}]*\}', "Q", t)
    t = re.sub(r"\b[a-z]*\d+\b", "N", t)
    return t[:200]


def _pipeline_error(batch, step, texts, slot=None):
    mine = [t for t in texts if slot is None or f"{batch.prefix}_{slot}" in t] or texts
    return {"kind": "pipeline_error", "db": "main", "coll": None, "id": None,
            "detail": f"{step}: " + "; ".join(mine)[:600],
            "sig": " | ".join(sorted({_normalize(t, batch.prefix) for t in mine}))}


def _broken(batch):
    """_broken: the batch's migration did not run to the end (so slot results are void)."""
    s = batch.steps
    if s.get("source", {}).get("ok") is False:
        return "the source died"
    if s.get("init", {}).get("rc") != 0:
        return "init failed"
    for name in ("copy_start", "copy", "catch_up"):
        if s.get(name, {}).get("ok") is False:
            return f"{name} did not finish"
    return None


def run_attributed(env, scenarios, say, split=True):
    """run_attributed runs scenarios and returns (results, batches): results is a list of
    (scenario, diffs, acks) per scenario; a broken batch is split until attributable.

    split=False (the shrinker's cheap mode): a broken batch is not run again; the slots
    its errors name get the pipeline error, the others no result at all."""
    batch = harness.run_batch(env, scenarios)
    batches = [batch]
    texts = _error_texts(batch)
    named = _named_slots(batch, texts)
    broken = _broken(batch)
    if broken:
        # what broke the migration is in the follower's errors and the harness's notes;
        # the cutover and validate only name collections that failed on their own
        cause = list(batch.notes) + list(batch.steps.get("sync", {}).get("errors") or [])
        named = _named_slots(batch, cause) or named
    results = []
    if not broken:
        for s in batch.slots:
            diffs = list(s.diffs)
            if s.index in named:
                diffs.insert(0, _pipeline_error(batch, "error", texts, s.index))
            results.append((s.scenario, diffs, s.acks))
        return results, batches
    if not split:
        return [(sc, [_pipeline_error(batch, broken, texts, i)], batch.slots[i].acks)
                for i, sc in enumerate(scenarios) if i in named or len(scenarios) == 1], batches
    say(f"  batch {batch.prefix} ({len(scenarios)} seeds) broke: {broken}; "
        f"errors: {'; '.join(texts)[:400]}")
    if len(scenarios) == 1:
        results.append((scenarios[0], [_pipeline_error(batch, broken, texts, 0)]
                        + list(batch.slots[0].diffs), batch.slots[0].acks))
        return results, batches
    if named and len(named) < len(scenarios):
        groups = [[scenarios[i]] for i in sorted(named)]
        groups.append([sc for i, sc in enumerate(scenarios) if i not in named])
    else:
        half = len(scenarios) // 2
        groups = [scenarios[:half], scenarios[half:]]
    for g in groups:
        r, b = run_attributed(env, g, say)
        results.extend(r)
        batches.extend(b)
    return results, batches


# ---- shrinking ----

def failure_key(diffs):
    """failure_key is what a shrink step must keep: the primary kind of difference, for a
    pipeline error its normalized messages, and the kinds of difference seen (a smaller
    scenario must not fail in a new way: removing the document that made init choose a
    jsonb key, say, turns it into another hole)."""
    kind = primary_kind(diffs)
    sigs = frozenset(s for d in diffs if d["kind"] == "pipeline_error"
                     for s in d["sig"].split(" | "))
    return kind, sigs, frozenset(d["kind"] for d in diffs)


def _fails_like(diffs, key):
    kind, sigs, kinds = key
    if not any(d["kind"] == kind for d in diffs) or not {d["kind"] for d in diffs} <= kinds:
        return False
    if kind == "pipeline_error":
        mine = {s for d in diffs if d["kind"] == kind for s in d["sig"].split(" | ")}
        return bool(mine & sigs)
    return True


def _variants(op):
    """_variants are smaller versions of one op (fields, operators, requests, sub-ops)."""
    out = []
    a = op.args

    def with_args(**kw):
        return gen.Op(op.kind, op.phase, op.coll, db=op.db, tags=op.tags, **{**a, **kw})

    def doc_variants(d, keep_id=True):
        return _smaller(d, keep_id)[:200]

    if op.kind == "insert":
        out += [with_args(doc=d) for d in doc_variants(a["doc"])]
    elif op.kind == "insert_many":
        docs = a["docs"]
        if len(docs) > 1:
            out += [with_args(docs=docs[:i] + docs[i + 1:]) for i in range(len(docs))]
        out += [gen.Op("insert", op.phase, op.coll, db=op.db, tags=op.tags, doc=d) for d in docs]
    elif op.kind == "replace" or (op.kind == "find_modify" and a.get("replacement") is not None):
        out += [with_args(replacement=d) for d in doc_variants(a["replacement"])]
    if op.kind in ("update", "find_modify") and a.get("update") is not None \
            and a["update"][0] == B.DOC:
        u = a["update"]
        if len(u[1]) > 1:
            out += [with_args(update=(B.DOC, u[1][:i] + u[1][i + 1:])) for i in range(len(u[1]))]
        for i, (name, args) in enumerate(u[1]):
            if args[0] == B.DOC and len(args[1]) > 1:
                for j in range(len(args[1])):
                    smaller = (B.DOC, args[1][:j] + args[1][j + 1:])
                    out.append(with_args(update=(B.DOC, u[1][:i] + ((name, smaller),)
                                                 + u[1][i + 1:])))
    if op.kind == "bulk" and len(a["requests"]) > 1:
        r = a["requests"]
        out += [with_args(requests=r[:i] + r[i + 1:]) for i in range(len(r))]
    if op.kind == "txn":
        subs = a["ops"]
        if len(subs) > 1:
            out += [with_args(ops=subs[:i] + subs[i + 1:]) for i in range(len(subs))]
        out += [gen.Op(s.kind, op.phase, s.coll, db=s.db, tags=s.tags, **s.args) for s in subs]
        for i, s in enumerate(subs):
            out += [with_args(ops=subs[:i] + [v] + subs[i + 1:]) for v in _variants(s)]
    if op.kind == "bulk":
        r = a["requests"]
        for i, (kind, sub) in enumerate(r):
            one = gen.Op(kind, op.phase, op.coll, db=op.db, **sub)
            out += [with_args(requests=r[:i] + [(kind, v.args)] + r[i + 1:])
                    for v in _variants(one) if v.kind == kind]
    return out


def _smaller(v, keep_id=False, depth=0):
    """_smaller lists the values v becomes with one field or element removed (at any
    depth: top-level removals first), or one container replaced by null."""
    if v[0] not in (B.DOC, B.ARRAY) or depth > 120:
        return []
    items = v[1]
    out = [(v[0], items[:i] + items[i + 1:]) for i, (k, _) in enumerate(items)
           if not (keep_id and depth == 0 and k == b"_id")]
    for i, (k, x) in enumerate(items):
        if keep_id and depth == 0 and k == b"_id":
            continue
        if x[0] in (B.DOC, B.ARRAY, B.CODEWSCOPE) and depth < 3:
            out.append((v[0], items[:i] + ((k, B.NULL_V),) + items[i + 1:]))
        for y in _smaller(x, False, depth + 1):
            out.append((v[0], items[:i] + ((k, y),) + items[i + 1:]))
    return out


class Shrinker:
    """Shrinker reduces one failing scenario while its primary kind of difference persists."""

    def __init__(self, env, failure, budget, say):
        self.env = env
        self.f = failure
        self.key = failure_key(failure.diffs)
        self.deadline = time.monotonic() + budget
        self.say = say
        self.rounds = 0

    def time_left(self):
        return time.monotonic() < self.deadline

    def test(self, candidates):
        """test runs candidate op lists in one batch; returns [(ops, diffs)] of those failing."""
        self.rounds += 1
        # a candidate without documents before init may leave init nothing to plan; one
        # that writes to a collection it no longer creates before init makes a new one
        if not self.f.scenario.options.allows("new-collection"):
            candidates = [gen.drop_new_collection_ops(c) for c in candidates]
        scs = [self.f.scenario.with_ops(ops) for ops in candidates
               if any(op.phase == "pre" for op in ops)]
        out = []
        for i in range(0, len(scs), 60):
            if i and not self.time_left():
                break
            results, _ = run_attributed(self.env, scs[i:i + 60], lambda m: None, split=False)
            out += [(sc.ops, diffs) for sc, diffs, _ in results if _fails_like(diffs, self.key)]
        return out

    def ddmin(self, ops):
        n = 2
        while len(ops) >= 2 and self.time_left():
            size = (len(ops) + n - 1) // n
            chunks = [ops[i:i + size] for i in range(0, len(ops), size)]
            cands = [ops[:i * size] + ops[(i + 1) * size:] for i in range(len(chunks))]
            if n == 2:
                cands += chunks
            fails = self.test([c for c in cands if c])
            if fails:
                ops = min((o for o, _ in fails), key=len)
                n = max(n - 1, 2)
                continue
            if n >= len(ops):
                break
            n = min(len(ops), n * 2)
        return ops

    def simplify(self, ops):
        """simplify tries every one-step smaller variant of every op; greedy, in rounds."""
        while self.time_left():
            cands = []
            for i, op in enumerate(ops):
                for v in _variants(op):
                    cands.append(ops[:i] + [v] + ops[i + 1:])
            if not cands:
                break
            fails = self.test(cands[:240])
            if not fails:
                break
            ops = min((o for o, _ in fails), key=_weight)
        return ops

    def run(self):
        ops = list(self.f.scenario.ops)
        ops = self.ddmin(ops)
        ops = self.simplify(ops)
        ops = self.ddmin(ops)
        return self.f.scenario.with_ops(ops)


def _weight(ops):
    return sum(len(json.dumps(op.to_json())) for op in ops)


# ---- the whole run ----

def attribution(failure, diff, limit=6):
    """attribution lists the acknowledged operations of failure's seed that name diff's _id."""
    _id = diff.get("_id")
    if _id is None:
        return []
    k = compare.id_key(_id)
    lines = []
    acks = {a["i"]: a for a in failure.acks}
    for i, op in enumerate(failure.scenario.ops):
        if any(compare.id_key(x) == k for x in op.ids()):
            a = acks.get(i, {})
            outcome = ("acknowledged " + json.dumps(a.get("result"))[:120]) if a.get("ok") else (
                f"refused ({a.get('error', {}).get('code')}: "
                f"{a.get('error', {}).get('message', '')[:100]})" if a else "not run")
            lines.append(f"    op {i} [{op.phase}] {op.kind} {op.db}.{op.coll}: {outcome}")
    return lines[-limit:]


def format_failure(f):
    lines = [f"seed {f.seed}: {f.primary} (hole classes exercised: "
             f"{', '.join(sorted(f.scenario.tags())) or 'none'})"]
    lines += compare.summarize(f.diffs, 6)
    for d in f.diffs[:3]:
        att = attribution(f, d)
        if att:
            lines.append(f"  writes that named _id {d['id']}:")
            lines += att
    if f.minimal is not None:
        lines.append(f"  minimal reproduction ({len(f.minimal.ops)} of {len(f.scenario.ops)} ops"
                     f"{', confirmed alone' if f.confirmed else ', NOT confirmed alone'}):")
        lines += repro.describe(f.minimal, 30)
        lines += ["  its differences:"] + compare.summarize(f.minimal_diffs or [], 4)
        if f.repro_path:
            lines.append(f"  runnable: {f.repro_path}  (json: {f.repro_path[:-3]}.json)")
    return "\n".join(lines)


def run_seeds(env, seeds, cfg):
    """run_seeds runs seeds in batches, attributes and shrinks failures; returns a Report."""
    rep = Report()
    say = cfg.say
    it = iter(seeds)  # a soak passes a huge range: never make a list of it
    while True:
        if cfg.deadline is not None and time.monotonic() > cfg.deadline:
            say(f"time is up after {rep.seeds} seeds")
            break
        chunk = list(itertools.islice(it, cfg.batch_size))
        if not chunk:
            break
        t = time.monotonic()
        results, batches = run_attributed(env, [gen.scenario(s, cfg.options) for s in chunk], say)
        rep.seeds += len(chunk)
        for b in batches:
            rep.batches.append(b.to_json())
        failed = 0
        for sc, diffs, acks in results:
            if diffs:
                failed += 1
                rep.failures[sc.seed] = Failure(sc.seed, sc, diffs, acks)
        if not failed:
            # nothing differs: then every command of the migration must have succeeded
            # (a validation mismatch here is one the comparer cannot see, or a false alarm)
            b = batches[-1]
            bad = {n: s for n, s in b.steps.items() if s.get("rc", 0) != 0 or s.get("ok") is False
                   or (n == "validate" and (s.get("summary") or {}).get("status") != "clean")}
            if bad:
                rep.problems.append({"seeds": [chunk[0], chunk[-1]], "prefix": b.prefix,
                                     "steps": bad})
                say(f"  no seed differs, yet the migration did not succeed: {bad}")
        steps = batches[0].steps
        extra = f", {len(batches) - 1} more migrations to attribute" if len(batches) > 1 else ""
        say(f"seeds {chunk[0]}..{chunk[-1]}: {failed} failed, {time.monotonic() - t:.0f} s "
            f"(validate {steps.get('validate', {}).get('summary', {}).get('status')}, cutover "
            f"{steps.get('cutover', {}).get('summary', {}).get('outcome')}{extra})")
    if cfg.shrink:
        shrink_failures(env, rep, cfg)
    return rep


def shrink_failures(env, rep, cfg):
    """shrink_failures shrinks one failure per kind of difference and set of hole classes."""
    fails = sorted(rep.failures.values(), key=lambda f: (
        SEVERITY.index(f.primary) if f.primary in SEVERITY else 99, len(f.scenario.ops)))
    # first one failure per hole class that exercised it alone (in HOLES order), then one
    # per kind of failure and set of classes, then the rest while shrinks are left
    picked = []
    for hole in gen.HOLES:
        f = next((f for f in fails if f.scenario.tags() == {hole} and f not in picked), None)
        if f is not None:
            picked.append(f)
    seen = set()
    for f in fails:
        key = (failure_key(f.diffs), frozenset(f.scenario.tags()))
        if key not in seen and f not in picked:
            picked.append(f)
        seen.add(key)
    picked += [f for f in fails if f not in picked]
    for f in picked[:cfg.max_shrinks]:
        cfg.say(f"shrinking seed {f.seed} ({f.primary}, {len(f.scenario.ops)} ops)")
        sh = Shrinker(env, f, cfg.shrink_budget, cfg.say)
        f.minimal = sh.run()
        results, _ = run_attributed(env, [f.minimal], lambda m: None)
        f.minimal_diffs = results[0][1]
        f.confirmed = _fails_like(f.minimal_diffs, failure_key(f.diffs))
        cfg.say(f"  seed {f.seed}: {len(f.scenario.ops)} -> {len(f.minimal.ops)} ops in "
                f"{sh.rounds} rounds, {'confirmed' if f.confirmed else 'NOT confirmed'} alone")
        if cfg.outdir:
            os.makedirs(cfg.outdir, exist_ok=True)
            path = os.path.join(cfg.outdir, f"repro-seed{f.seed}.py")
            with open(path, "w") as out:
                out.write(repro.python_script(f.minimal, title=format_failure(f)))
            with open(path[:-3] + ".json", "w") as out:
                json.dump(f.minimal.to_json(), out)
            f.repro_path = path
