# The seqflow operator image.
#
#   make image                      # podman; also works with no registry reachable (hack/image.sh)
#   podman run --rm localhost/seqflow:dev --help
#
# or, with Docker:
#
#   docker build -t seqflow:0.1.0 .
#   docker run --rm seqflow:0.1.0 --help
#
# BASE is any Debian-like image with Python 3.11+ (`python` and `pip` on PATH, groupadd and
# useradd); `make image` passes a locally built Debian base when python:3.11-slim cannot be pulled.
#
# The same image runs the operator (`run`, the default), the history migrations (`migrate`) and
# handlers inside Job tasks (`task NAME`). To add your own handler modules, build FROM this image,
# `pip install` them and list them in SEQFLOW_HANDLER_MODULES.
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric user, so Kubernetes can check runAsNonRoot; it has a passwd entry because
# Python's getpass (used by Kopf to name itself when POD_ID is unset) needs one.
RUN groupadd --system --gid 65532 seqflow \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin seqflow \
 && install -d -o 65532 -g 65532 /var/lib/seqflow

# Without a database URL the history goes to an embedded SQLite file in this writable directory.
ENV SEQFLOW_DATABASE_URL=sqlite:////var/lib/seqflow/history.sqlite

# The dependencies first, pinned by constraints.txt, in a layer of their own: a change to the
# operator's code rebuilds only the last layer.
COPY pyproject.toml constraints.txt /src/
RUN python -c 'import tomllib; print(*tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
 && pip install --no-cache-dir -c /src/constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# pyproject.toml names README.md as the package's readme, so it is needed to build.
COPY README.md /src/
COPY operator/ /src/operator/
RUN pip install --no-cache-dir --no-deps -c /src/constraints.txt /src && rm -rf /src

USER 65532:65532
ENTRYPOINT ["python", "-m", "seqflow"]
CMD ["run"]
