# The image behind `maasctl deploy k8s --image IMAGE`: `maasctl serve` with the S3 store extra, as a non-root user.
# Build from the repository root:  docker build -t REGISTRY/maasctl:VERSION .
# The only network use at build time is pip reaching PyPI (or the index in PIP_INDEX_URL).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY maasctl ./maasctl
RUN pip install '.[s3]' \
    && rm -rf /src \
    && groupadd --gid 10001 maas \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin maas \
    && mkdir -p /var/cache/maasctl \
    && chown 10001:10001 /var/cache/maasctl

# the root filesystem may be read-only (the generated Deployment mounts emptyDir volumes on these two paths)
ENV HOME=/tmp \
    MAASCTL_CACHE=/var/cache/maasctl \
    MAASCTL_LOCAL_HOME=/var/cache/maasctl/home
USER 10001:10001
WORKDIR /tmp
EXPOSE 8501
ENTRYPOINT ["maasctl"]
CMD ["--help"]
