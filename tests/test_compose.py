"""docker-compose.yml cannot run here (no Docker engine); its structure is checked instead."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def test_compose_file_has_the_production_services():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"redis", "postgres", "migrate", "worker-gpu", "worker-cpu", "beat", "flower"} <= set(services)

    redis_command = " ".join(services["redis"]["command"])
    assert "--requirepass" in redis_command and "--appendonly yes" in redis_command
    assert services["redis"]["image"].startswith("redis:7")

    assert "db upgrade" in " ".join(services["migrate"]["command"])
    assert services["migrate"].get("restart", "no") == "no"
    for name in ("worker-gpu", "worker-cpu", "beat", "flower"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name

    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "gpu" in " ".join(services["worker-gpu"]["command"])

    flower_command = " ".join(services["flower"]["command"])
    assert "--basic-auth" in flower_command or "FLOWER_BASIC_AUTH" in services["flower"].get("environment", {})

    for name in ("worker-gpu", "worker-cpu", "beat", "flower", "migrate"):
        env = services[name]["environment"]
        assert env["BERTQ_BROKER_URL"].startswith("redis://:") and "@redis:6379" in env["BERTQ_BROKER_URL"]
        assert env["BERTQ_DATABASE_URL"].startswith("postgresql+psycopg://")
