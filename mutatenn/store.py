"""The campaign's result store: one SQLite file in the run folder, committed per job.

Tables: ``meta`` (config and run facts), ``artifacts`` (one row per built-and-run
artifact: status, timings, where its outputs are), ``mutants`` and ``verdicts`` (one row
per mutant × stack, with every comparison operator's value and the flipped images).
A campaign interrupted at any point resumes from it: finished artifacts are not run again.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .errors import OutputFolderError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (
    key TEXT PRIMARY KEY, stack TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    log_tail TEXT NOT NULL DEFAULT '', build_s REAL, run_s REAL, outputs TEXT, finished TEXT NOT NULL,
    unstable_images TEXT
);
CREATE TABLE IF NOT EXISTS mutants (
    id TEXT PRIMARY KEY, ordinal INTEGER NOT NULL, operator TEXT NOT NULL, level TEXT NOT NULL,
    site_index INTEGER NOT NULL, site TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
    hash TEXT NOT NULL, build_options TEXT NOT NULL, diff TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS verdicts (
    mutant_id TEXT NOT NULL, stack TEXT NOT NULL, verdict TEXT NOT NULL, reason TEXT NOT NULL,
    artifact TEXT, "values" TEXT NOT NULL, flipped INTEGER, flipped_images TEXT NOT NULL,
    build_s REAL, run_s REAL, log_tail TEXT NOT NULL DEFAULT '', unstable INTEGER, unstable_images TEXT,
    PRIMARY KEY (mutant_id, stack)
);
"""
# Columns added after the first release: a store written before them gains them on open
# (NULL = not measured), so an older run folder still resumes.
ADDED_COLUMNS = {"artifacts": [("unstable_images", "TEXT"), ("build_info", "TEXT"), ("images_run", "INTEGER")],
                 "verdicts": [("unstable", "INTEGER"), ("unstable_images", "TEXT"), ("images_run", "INTEGER"),
                              ("passes_killed", "INTEGER"), ("triage", "TEXT")],
                 "mutants": [("via", "TEXT")]}
ARTIFACT_FIELDS = ("key", "stack", "status", "reason", "log_tail", "build_s", "run_s", "outputs", "finished",
                   "unstable_images", "build_info", "images_run")
VERDICT_FIELDS = ("mutant_id", "stack", "verdict", "reason", "artifact", "values", "flipped", "flipped_images",
                  "build_s", "run_s", "log_tail", "unstable", "unstable_images", "images_run", "passes_killed",
                  "triage")


class ResultStore:
    """A thin layer over sqlite3; every write is its own committed transaction.
    ``read_only``: open an existing store without writing anything (repro, localize)."""

    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path)
        if read_only:
            try:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                self.db.execute("SELECT 1 FROM mutants LIMIT 1")
            except sqlite3.Error as err:
                raise OutputFolderError(f"cannot read the result store {str(self.path)!r}: {err}") from None
            return
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            for table, columns in ADDED_COLUMNS.items():
                have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns:
                    if name not in have:
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        except sqlite3.Error as err:
            raise OutputFolderError(f"cannot open the result store {str(self.path)!r}: {err}") from None

    def close(self) -> None:
        self.db.close()

    # --------------------------------------------------------------- meta
    def get_meta(self, key: str):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # --------------------------------------------------------------- artifacts
    def finished_artifacts(self) -> dict[str, dict]:
        """key -> artifact row; ``unstable_images`` is a list, or None when not measured."""
        names = ("key", "stack", "status", "reason", "log_tail", "build_s", "run_s", "outputs", "unstable_images",
                 "build_info", "images_run")
        rows = self.db.execute(f"SELECT {', '.join(names)} FROM artifacts")
        out = {}
        for r in rows:
            row = dict(zip(names, r))
            row["unstable_images"] = _loads_or_none(row["unstable_images"])
            row["build_info"] = _loads_or_none(row["build_info"])
            out[r[0]] = row
        return out

    def record_artifact(self, info: dict, verdict_rows: list[dict], finished: str) -> None:
        """One finished job (an artifact row as ``finished_artifacts`` gives it) and the
        verdicts it settles, in one transaction."""
        row = {**{k: info.get(k) for k in ARTIFACT_FIELDS}, "finished": finished,
               "unstable_images": _dumps_or_none(info.get("unstable_images")),
               "build_info": _dumps_or_none(info.get("build_info"))}
        with self._transaction():
            self.db.execute(f"INSERT OR REPLACE INTO artifacts ({', '.join(ARTIFACT_FIELDS)}) "
                            f"VALUES ({', '.join(':' + k for k in ARTIFACT_FIELDS)})", row)
            self._insert_verdicts(verdict_rows)

    # --------------------------------------------------------------- mutants and verdicts
    def record_mutants(self, mutants: list[dict]) -> None:
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO mutants (id, ordinal, operator, level, site_index, site, status, reason, "
                "hash, build_options, diff, via) VALUES (:id, :ordinal, :operator, :level, :site_index, :site, "
                ":status, :reason, :hash, :build_options, :diff, :via)", [{"via": "", **m} for m in mutants])

    def record_verdicts(self, rows: list[dict]) -> None:
        with self._transaction():
            self._insert_verdicts(rows)

    def _insert_verdicts(self, rows: list[dict]) -> None:
        columns = ", ".join(f'"{k}"' for k in VERDICT_FIELDS)
        self.db.executemany(
            f"INSERT OR REPLACE INTO verdicts ({columns}) VALUES ({', '.join(':' + k for k in VERDICT_FIELDS)})",
            [{**{k: r.get(k) for k in VERDICT_FIELDS}, "values": json.dumps(r.get("values", {})),
              "flipped_images": json.dumps(r.get("flipped_images", [])),
              "unstable_images": _dumps_or_none(r.get("unstable_images"))} for r in rows])

    def mutants(self) -> list[dict]:
        cur = self.db.execute("SELECT * FROM mutants ORDER BY ordinal")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

    def mutant(self, mutant_id: str) -> dict | None:
        cur = self.db.execute("SELECT * FROM mutants WHERE id = ?", (mutant_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row))

    def verdicts(self, mutant_id: str | None = None, stack: str | None = None) -> list[dict]:
        """Every stored verdict row, or those of one mutant (on one stack)."""
        query, args = "SELECT * FROM verdicts", ()
        if mutant_id is not None:
            query, args = query + " WHERE mutant_id = ?", (mutant_id,)
            if stack is not None:
                query, args = query + " AND stack = ?", (mutant_id, stack)
        cur = self.db.execute(query, args)
        names = [d[0] for d in cur.description]
        out = []
        for r in cur:
            row = dict(zip(names, r))
            row["values"] = json.loads(row["values"])
            row["flipped_images"] = json.loads(row["flipped_images"])
            row["unstable_images"] = _loads_or_none(row["unstable_images"])
            out.append(row)
        return out

    def _transaction(self):
        store = self

        class _Tx:
            def __enter__(self):
                store.db.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind, *_):
                store.db.execute("COMMIT" if kind is None else "ROLLBACK")
                return False

        return _Tx()


def _dumps_or_none(value) -> str | None:
    return None if value is None else json.dumps(value)


def _loads_or_none(text):
    return None if text is None else json.loads(text)
