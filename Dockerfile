# One image for every service of the distributed deployment (Airflow components, relay, sandbox):
# the official Airflow 3.3.2 image plus this project's pinned requirements and code.
# (Where no image registry is reachable, deploy/standins/build.sh builds a local stand-in under the
# same name; this file does not change for it.)
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt /opt/project/requirements.txt
RUN pip install --no-cache-dir -r /opt/project/requirements.txt

# >>> Reserved for the project's provider distribution (the hooks as an installable Airflow
# provider): once it exists, install it here from the build context, e.g.
#   COPY --chown=airflow:root dist/ /opt/project/dist/
#   RUN pip install --no-cache-dir --no-deps /opt/project/dist/*.whl
# <<<

# Mount points of the compose file's named volumes. Docker gives a new named volume the owner of
# the directory it is mounted on, so they must exist here, owned by the user the services run as.
USER root
RUN mkdir -p /var/lib/relay /var/lib/sandbox \
    && chown airflow:root /var/lib/relay /var/lib/sandbox
USER airflow

COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root relay/ /opt/project/relay/
COPY --chown=airflow:root sandbox/ /opt/project/sandbox/
COPY --chown=airflow:root deploy/airflow_init.py /opt/project/deploy/airflow_init.py
ENV PYTHONPATH=/opt/project:/opt/airflow/plugins
