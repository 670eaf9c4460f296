# Placeholder container (the containers issue replaces it with the CUDA image).
# It installs exactly the pins that `make setup` installs and runs the default profile.
FROM python:3.11-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg HF_HUB_OFFLINE=1
RUN useradd --create-home --uid 1000 iusdiff
WORKDIR /opt/iusdiff
COPY requirements.txt requirements-nodeps.txt ./
RUN pip install -r requirements.txt && pip install --no-deps -r requirements-nodeps.txt
COPY --chown=1000:1000 . .
USER 1000
ENTRYPOINT ["./run_all.sh"]
CMD ["--profile", "default", "--out", "/outputs/default"]
