# One image for every service of the distributed deployment (Airflow components, relay, sandbox):
# the official Airflow 3.3.2 image plus this project's pinned requirements and code.
# (Where no image registry is reachable, deploy/standins/build.sh builds a local stand-in under the
# same name; this file does not change for it.)
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt /opt/project/requirements.txt
RUN pip install --no-cache-dir -r /opt/project/requirements.txt


# Mount points of the compose file's named volumes. Docker gives a new named volume the owner of
# the directory it is mounted on, so they must exist here, owned by the user the services run as.
USER root
RUN mkdir -p /var/lib/relay /var/lib/sandbox \
    && chown airflow:root /var/lib/relay /var/lib/sandbox
USER airflow

COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
# The provider distribution registers the Dynamics 365 and Marketo connection types (forms, Test
# button). Its package is plugins/contact_sync itself (package-dir ../plugins), installed editable
# so there is one copy of the code; it must sit beside plugins/.
COPY --chown=airflow:root provider/ /opt/airflow/provider/
RUN pip install --no-cache-dir --no-deps -e /opt/airflow/provider
COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root relay/ /opt/project/relay/
COPY --chown=airflow:root sandbox/ /opt/project/sandbox/
COPY --chown=airflow:root deploy/airflow_init.py /opt/project/deploy/airflow_init.py
ENV PYTHONPATH=/opt/project:/opt/airflow/plugins
