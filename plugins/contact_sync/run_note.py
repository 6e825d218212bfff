"""The outcome at a glance: each finished run of both DAGs gets its report's headline as its note.

A task cannot set its own run's note through the Task SDK in Airflow 3.3 (the Execution API has
no such call), so this is an Airflow listener, registered by ``contact_sync_plugin``: the
scheduler calls ``on_dag_run_success`` / ``on_dag_run_failed`` with the run's ORM ``DagRun``
inside its own database session, after it has set the run's final state ("Listeners",
https://airflow.apache.org/docs/apache-airflow/stable/administration-and-deployment/listeners.html).
Setting ``DagRun.note`` there is saved with the scheduler's transaction; the note shows in the
run's header and the runs list of Airflow's UI, so an operator sees "2 created, 1 rejected: no
email" without opening a log.

The headline comes from the ``report`` task's XCom (the run's summary: counts and reasons, no
contact data); a run that failed before its report says so. A note the run already had (the
relay's, or an operator's) is kept: the outcome is appended as one line starting with
:data:`NOTE_PREFIX`, and replaced, not repeated, when a cleared run finishes again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.listeners import hookimpl

from contact_sync.report import RunReport

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from sqlalchemy.orm import Session

__all__ = ["NOTE_PREFIX", "REPORTS", "headline_of", "note_with_outcome"]

log = logging.getLogger(__name__)

#: DAG id → (task id, XCom key) of the run's summary (:meth:`RunReport.to_dict`).
REPORTS: Mapping[str, tuple[str, str]] = {
    "dynamics_contact_to_marketo": ("report", "summary"),
    "dynamics_marketo_reconciliation": ("report", "return_value"),
}
#: Marks the line this listener owns in a run's note.
NOTE_PREFIX = "Outcome: "
#: ``dag_run_note.content`` is a String(1000) column.
_NOTE_LENGTH = 1000
_NO_REPORT = "no report: the run ended before its report task recorded one (see the failed task)"


def headline_of(summary: Mapping[str, Any] | None) -> str:
    """The note line of a run's summary, or what a run without one should say."""
    if not summary:
        return _NO_REPORT
    return RunReport.from_dict(summary).headline()


def note_with_outcome(note: str | None, headline: str) -> str:
    """``note`` with its outcome line replaced by ``headline`` (appended when it had none)."""
    kept = [line for line in (note or "").splitlines() if not line.startswith(NOTE_PREFIX)]
    while kept and not kept[-1].strip():
        kept.pop()
    line = f"{NOTE_PREFIX}{headline}"
    text = "\n".join([*kept, line]) if kept else line
    if len(text) > _NOTE_LENGTH:
        # The outcome line is the part this listener owns: shorten it, never the other text.
        room = max(_NOTE_LENGTH - len("\n".join(kept)) - 1, len(NOTE_PREFIX) + 1)
        line = line[: room - 1] + "…"
        text = ("\n".join([*kept, line]) if kept else line)[:_NOTE_LENGTH]
    return text


def _summary(dag_run: DagRun, session: Session, task_id: str, key: str) -> Any:
    from airflow.models.xcom import XComModel

    query = XComModel.get_many(
        run_id=dag_run.run_id, key=key, dag_ids=dag_run.dag_id, task_ids=task_id, map_indexes=-1
    )
    row = session.execute(query.with_only_columns(XComModel.value)).first()
    return None if row is None else XComModel.deserialize_value(row)


def set_outcome_note(dag_run: DagRun, session: Session | None = None) -> None:
    """Put the run's outcome into its note (a no-op for other DAGs)."""
    where = REPORTS.get(dag_run.dag_id)
    if where is None:
        return
    from sqlalchemy.orm import object_session

    session = session or object_session(dag_run)
    if session is None:
        # dag.test() hands listeners a run detached from the session it is scheduling with; that
        # session is Airflow's thread-local scoped one, so the note goes into its transaction
        # too. (A second session would wait on the first one's write lock on SQLite.)
        from airflow import settings
        from airflow.models.dagrun import DagRun

        session = settings.Session()
        attached = session.get(DagRun, dag_run.id)
        if attached is None:
            log.warning("run %s of %s not found: no note", dag_run.run_id, dag_run.dag_id)
            return
        dag_run = attached
    summary = _summary(dag_run, session, *where)
    dag_run.note = note_with_outcome(dag_run.note, headline_of(summary))
    session.flush()
    log.info("run %s of %s: outcome note set", dag_run.run_id, dag_run.dag_id)


def _guarded(dag_run: DagRun) -> None:
    # A listener's exception is only logged by Airflow; never let a note stop the scheduler.
    try:
        set_outcome_note(dag_run)
    except Exception:
        log.exception("could not set the outcome note of run %s", dag_run.run_id)


@hookimpl
def on_dag_run_success(dag_run: DagRun, msg: str) -> None:
    """A run of either DAG succeeded: its outcome goes into its note."""
    _guarded(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: DagRun, msg: str) -> None:
    """A run of either DAG failed: its outcome (or that it had no report) goes into its note."""
    _guarded(dag_run)
