"""Run one DAG with ``dag.test()`` in a process of its own and print the outcome as JSON.

``python -m tests.reconcile.dag_runner <dag file> <dag id> <logical date ISO> <conf JSON>``

A process of its own because Airflow reads its configuration (``AIRFLOW_HOME``, the metadata DB)
once per process, and the test session has long imported it by then.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime


def main(path: str, dag_id: str, logical_date: str, conf: str) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=path)
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]

    run = dag.test(logical_date=datetime.fromisoformat(logical_date), run_conf=json.loads(conf))

    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag_id)).all()
        xcoms = {
            f"{row.task_id}[{row.map_index}].{row.key}": XComModel.deserialize_value(row)
            for row in rows
        }
        states = {
            f"{ti.task_id}[{ti.map_index}]": ti.state
            for ti in run.get_task_instances(session=session)
        }
    print("DAG_RESULT " + json.dumps({"state": run.state, "tasks": states, "xcom": xcoms}))


if __name__ == "__main__":
    main(*sys.argv[1:])
