# syntax=docker/dockerfile:1
#
# The compose demo's DynamoDB workload (deploy/workload.py and the harness's workload module it
# runs, tests/harness/workload.py): boto3 only, pointed at Envoy.

ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE}
RUN pip install --no-cache-dir "boto3>=1.34,<2"
COPY tests/harness/__init__.py tests/harness/latency.py tests/harness/workload.py /app/harness/
COPY deploy/workload.py /app/workload.py
USER 65532:65532
ENTRYPOINT ["python", "-u", "/app/workload.py"]
