"""moto, plus the part of ECS it leaves out: the deployment controller's progress.

moto stores `update_service`'s new task definition but never starts a deployment for
it. This runs moto's own server in-process and, every 50 ms, does what ECS does for
services with the ECS deployment controller: a changed task definition starts a new
PRIMARY deployment (the old one turns ACTIVE), which then completes — or, for task
definitions listed in MOTO_ECS_BROKEN (comma-separated, e.g. "web:3"), fails the way
the deployment circuit breaker reports it.

Usage: python moto_ecs.py PORT
"""
import os
import sys
import time

from moto.ecs.models import ecs_backends
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

port = int(sys.argv[1])
broken = {b for b in os.environ.get("MOTO_ECS_BROKEN", "").split(",") if b}
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()


def short(task_definition):
    return task_definition.rsplit("/", 1)[-1]


def progress(service):
    deployments = service.deployments
    if not deployments:
        return
    primary = deployments[0]
    wanted = service.task_definition
    if short(primary["taskDefinition"]) != short(wanted):
        started = dict(
            primary,
            id=f"ecs-svc/{time.time_ns()}",
            taskDefinition=wanted,
            status="PRIMARY",
            rolloutState="IN_PROGRESS",
            rolloutStateReason="ECS deployment in progress.",
            runningCount=0,
            failedTasks=0,
            desiredCount=service.desired_count,
        )
        service.deployments = [started, dict(primary, status="ACTIVE")]
    elif primary["rolloutState"] == "IN_PROGRESS":
        if short(wanted) in broken:
            primary.update(
                rolloutState="FAILED",
                failedTasks=service.desired_count,
                rolloutStateReason="ECS deployment circuit breaker: tasks failed to start.",
            )
        else:
            primary.update(
                rolloutState="COMPLETED",
                runningCount=service.desired_count,
                rolloutStateReason="ECS deployment completed.",
            )
            service.deployments = [primary]


while True:
    time.sleep(0.05)
    try:
        for regions in list(ecs_backends.values()):
            for backend in list(regions.values()):
                for service in list(backend.services.values()):
                    if (service.deployment_controller or {}).get("type", "ECS") == "ECS":
                        progress(service)
    except RuntimeError:
        pass  # a dict changed size under us: try again next tick
