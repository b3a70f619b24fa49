"""moto, plus the parts of ECS, EC2 Auto Scaling and the ALB it leaves out or gets wrong.

Auto Scaling: moto reports every instance as launched from the template's *default*
version and never deregisters terminated instances from target groups. Real AWS
reports the version each instance was launched from and deregisters it when it goes;
the instance-replacement code depends on both, so this records the group's version at
launch and sweeps terminated instances out of target groups.

With MOTO_INSTANCE_REFRESH=1 it also has instance refresh (moto has none): a refresh
replaces, one per tick, every instance not launched from the group's current template
version, then reports Successful.

ECS: the deployment controller's progress, and its scaling: a completed deployment's
running count follows the service's desired count.

moto stores `update_service`'s new task definition but never starts a deployment for
it. This runs moto's own server in-process and, every 50 ms, does what ECS does for
services with the ECS deployment controller: a changed task definition starts a new
PRIMARY deployment (the old one turns ACTIVE), which then completes — or, for task
definitions listed in MOTO_ECS_BROKEN (comma-separated, e.g. "web:3"), fails the way
the deployment circuit breaker reports it.

EC2: launch template versions from a source version. moto ignores
CreateLaunchTemplateVersion's SourceVersion and stores only the data given; AWS starts
from the source version's data and overrides what is given. This does as AWS does.

ALB: listener and rule actions as a live load balancer reports and refuses them.

moto keeps every action field it is given (authentication configs, Order, forward
stickiness) and echoes it back, but it reports an OIDC action's ClientSecret (AWS never
does: a write that keeps the action says UseExistingClientSecret instead), accepts a
forward naming one group in TargetGroupArn and others in ForwardConfig (AWS refuses), and
reports a forward to one group with only the field it was written with (AWS reports
both). This refuses and reports as AWS does.

Lambda: provisioned concurrency (moto has none). Put, get and delete on a version or
an alias, as AWS answers them: a new configuration is IN_PROGRESS, then READY 300 ms
later (FAILED for the `FUNCTION:VERSION`s listed in MOTO_LAMBDA_PC_FAILS); none is
ProvisionedConcurrencyConfigNotFoundException; `$LATEST` and an alias with weights are
refused ("Alias with weights can not be used with Provisioned Concurrency"). It does not
allocate anything: nothing here invokes a function.

Usage: python moto_ecs.py PORT
"""
import copy
import os
import sys
import time

from moto.autoscaling import models as autoscaling
from moto.autoscaling.models import autoscaling_backends
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.ecs.models import ecs_backends
from moto.elbv2 import models as elbv2
from moto.elbv2.exceptions import ELBClientError
from moto.elbv2.models import elbv2_backends
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

port = int(sys.argv[1])
broken = {b for b in os.environ.get("MOTO_ECS_BROKEN", "").split(",") if b}
_instance_state_init = autoscaling.InstanceState.__init__


def _launched_from(self, *args, **kwargs):
    _instance_state_init(self, *args, **kwargs)
    group = self.auto_scaling_group
    template = group.ec2_launch_template if group is not None else None
    self._launched_version = None
    if template is not None:
        wanted = _group_version(group)
        self._launched_version = {"LaunchTemplateId": template.id, "LaunchTemplateName": template.name, "Version": wanted}


autoscaling.InstanceState.__init__ = _launched_from

_action_init = elbv2.FakeAction.__init__


def _invalid(message):
    return ELBClientError("InvalidLoadBalancerAction", message)


def _action_as_alb_takes_it(self, data):
    """Refuse an action AWS refuses; keep what AWS keeps, report what AWS reports."""
    data = dict(data)
    if data.get("Type") == "authenticate-oidc":
        oidc = dict(data.get("AuthenticateOidcConfig") or {})
        secret, reuse = "ClientSecret" in oidc, bool(oidc.get("UseExistingClientSecret"))
        if secret and reuse:
            raise _invalid("You cannot both specify a client secret and set UseExistingClientSecret to true")
        if not secret and not reuse:
            raise _invalid("A client secret is required unless UseExistingClientSecret is true")
        oidc.pop("ClientSecret", None)
        oidc.pop("UseExistingClientSecret", None)
        data["AuthenticateOidcConfig"] = oidc
    if data.get("Type") == "forward":
        arn = data.get("TargetGroupArn")
        groups = (data.get("ForwardConfig") or {}).get("TargetGroups") or []
        if arn and groups and [g.get("TargetGroupArn") for g in groups] != [arn]:
            raise _invalid(
                "You cannot specify a target group ARN and a forward config that names other target groups"
            )
        if arn and not groups:
            data["ForwardConfig"] = dict(data.get("ForwardConfig") or {}, TargetGroups=[{"TargetGroupArn": arn, "Weight": 1}])
        elif len(groups) == 1 and not arn:
            data["TargetGroupArn"] = groups[0].get("TargetGroupArn")
    _action_init(self, data)


elbv2.FakeAction.__init__ = _action_as_alb_takes_it

_create_version = LaunchTemplates.create_launch_template_version


def _create_version_from_source(self):
    """The source version's data, overridden top-level key by key by what is given."""
    source = self._get_param("SourceVersion")
    if source:
        name, template_id = self._get_param("LaunchTemplateName"), self._get_param("LaunchTemplateId")
        template = (
            self.ec2_backend.get_launch_template_by_name(name) if name else self.ec2_backend.get_launch_template(template_id)
        )
        data = copy.deepcopy(template.get_version(source).data)
        given = self._get_param

        def merged(param, default=None):
            if param == "LaunchTemplateData":
                return dict(data, **(given(param, {}) or {}))
            return given(param, default)

        self._get_param = merged
    return _create_version(self)


LaunchTemplates.create_launch_template_version = _create_version_from_source
autoscaling.InstanceState.launch_template = property(lambda self: self._launched_version)


def sweep_target_groups():
    """Deregister instances no group holds any more, as the ALB does for terminated ones."""
    for regions in list(autoscaling_backends.values()):
        for region, backend in list(regions.items()):
            elb = elbv2_backends[backend.account_id][region]
            # The targets first, the instances groups hold second: an instance launched
            # (and registered) between the two reads is in a group by the second, so it is
            # never taken for a terminated one. The other order dropped new instances from
            # their target groups now and then, and they never became healthy.
            registered = [(tg, [t for t in list(tg.targets) if t.startswith("i-")]) for tg in list(elb.target_groups.values())]
            held = {s.instance.id for g in list(backend.autoscaling_groups.values()) for s in list(g.instance_states)}
            for tg, targets in registered:
                for target in targets:
                    if target not in held:
                        tg.targets.pop(target, None)


refreshes = {}  # id -> {group, backend, status}


def refresh_instances():
    """Advance every refresh in progress by one instance."""
    for refresh in list(refreshes.values()):
        if refresh["status"] != "InProgress":
            continue
        backend = refresh["backend"]
        group = backend.autoscaling_groups[refresh["group"]]
        wanted = _group_version(group)
        stale = [s for s in list(group.instance_states) if (s._launched_version or {}).get("Version") != wanted]
        if stale:
            backend.terminate_instance(stale[0].instance.id, False)
        else:
            refresh["status"] = "Successful"


def _group_version(group):
    template = group.ec2_launch_template
    wanted = str(getattr(group, "launch_template_version", "$Default"))
    if wanted == "$Latest":
        return str(template.latest_version_number)
    if not wanted.isdigit():
        return str(template.default_version_number)
    return wanted

if os.environ.get("MOTO_INSTANCE_REFRESH"):
    import uuid

    from moto.autoscaling.exceptions import AutoscalingClientError
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult

    class InstanceRefreshInProgress(AutoscalingClientError):
        code = "InstanceRefreshInProgress"

        def __init__(self):
            super().__init__("An Instance Refresh is already in progress.")

    def start_instance_refresh(self):
        name = self._get_param("AutoScalingGroupName")
        if any(r["group"] == name and r["status"] == "InProgress" for r in refreshes.values()):
            raise InstanceRefreshInProgress()
        refresh_id = str(uuid.uuid4())
        refreshes[refresh_id] = {"group": name, "backend": self.autoscaling_backend, "status": "InProgress"}
        return ActionResult({"InstanceRefreshId": refresh_id})

    def describe_instance_refreshes(self):
        name = self._get_param("AutoScalingGroupName")
        ids = self._get_param("InstanceRefreshIds") or []
        found = [
            {"InstanceRefreshId": i, "AutoScalingGroupName": r["group"], "Status": r["status"]}
            for i, r in refreshes.items()
            if r["group"] == name and (not ids or i in ids)
        ]
        return ActionResult({"InstanceRefreshes": found})

    def cancel_instance_refresh(self):
        name = self._get_param("AutoScalingGroupName")
        for refresh_id, r in refreshes.items():
            if r["group"] == name and r["status"] == "InProgress":
                r["status"] = "Cancelled"
                return ActionResult({"InstanceRefreshId": refresh_id})
        return ActionResult({})

    AutoScalingResponse.start_instance_refresh = start_instance_refresh
    AutoScalingResponse.describe_instance_refreshes = describe_instance_refreshes
    AutoScalingResponse.cancel_instance_refresh = cancel_instance_refresh


def provisioned_concurrency():
    import json
    from datetime import datetime, timezone
    from urllib.parse import unquote

    from moto.awslambda import urls as lambda_urls
    from moto.awslambda.exceptions import LambdaClientError
    from moto.awslambda.responses import LambdaResponse

    failing = {f for f in os.environ.get("MOTO_LAMBDA_PC_FAILS", "").split(",") if f}
    configs = {}  # (account, region, function, qualifier) -> {"n", "at"}

    def key(self):
        function = unquote(self.path.rsplit("/", 2)[-2])
        qualifier = self.querystring.get("Qualifier", [""])[0]
        if not qualifier or qualifier == "$LATEST":
            raise LambdaClientError("InvalidParameterValueException", "Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
        # The function must exist, and the qualifier name one of its versions or aliases.
        self.backend.get_function(function, qualifier)
        return (self.current_account, self.region, function, qualifier), function, qualifier

    def put_provisioned_concurrency_config(self):
        k, function, qualifier = key(self)
        if not qualifier.isdigit():
            alias = self.backend.get_alias(qualifier, function)
            if (alias.routing_config or {}).get("AdditionalVersionWeights"):
                raise LambdaClientError("InvalidParameterValueException", "Alias with weights can not be used with Provisioned Concurrency")
        n = int(json.loads(self.body)["ProvisionedConcurrentExecutions"])
        configs[k] = {"n": n, "at": time.time()}
        return 202, {"status": 202}, json.dumps({"RequestedProvisionedConcurrentExecutions": n, "Status": "IN_PROGRESS"})

    def get_provisioned_concurrency_config(self):
        k, function, qualifier = key(self)
        config = configs.get(k)
        if config is None:
            raise LambdaClientError("ProvisionedConcurrencyConfigNotFoundException", "No Provisioned Concurrency Config found for this function")
        body = {"RequestedProvisionedConcurrentExecutions": config["n"], "LastModified": datetime.now(timezone.utc).isoformat()}
        if f"{function}:{qualifier}" in failing:
            body.update(Status="FAILED", StatusReason="FUNCTION_ERROR_INIT_FAILURE: the function failed to initialize", AllocatedProvisionedConcurrentExecutions=0, AvailableProvisionedConcurrentExecutions=0)
        elif time.time() - config["at"] < 0.3:
            body.update(Status="IN_PROGRESS", AllocatedProvisionedConcurrentExecutions=0, AvailableProvisionedConcurrentExecutions=0)
        else:
            body.update(Status="READY", AllocatedProvisionedConcurrentExecutions=config["n"], AvailableProvisionedConcurrentExecutions=config["n"])
        return 200, {}, json.dumps(body)

    def delete_provisioned_concurrency_config(self):
        k, _, _ = key(self)
        if configs.pop(k, None) is None:
            raise LambdaClientError("ResourceNotFoundException", "No Provisioned Concurrency Config found for this function")
        return 204, {"status": 204}, ""

    from moto.awslambda.exceptions import PreconditionFailedException
    import uuid

    moto_update_alias = LambdaResponse.update_alias

    def update_alias(self):
        function_name = unquote(self.path.rsplit("/")[-3])
        alias_name = unquote(self.path.rsplit("/", 2)[-1])
        alias = self.backend.get_alias(name=alias_name, function_name=function_name)
        wanted = json.loads(self.body).get("RevisionId")
        if wanted is not None and wanted != alias.revision_id:
            raise PreconditionFailedException("The Revision Id provided does not match the latest Revision Id. Call the GetAlias API to retrieve the latest Revision Id")
        alias.revision_id = str(uuid.uuid4())
        return moto_update_alias(self)

    LambdaResponse.update_alias = update_alias
    LambdaResponse.put_provisioned_concurrency_config = put_provisioned_concurrency_config
    LambdaResponse.get_provisioned_concurrency_config = get_provisioned_concurrency_config
    LambdaResponse.delete_provisioned_concurrency_config = delete_provisioned_concurrency_config
    lambda_urls.url_paths[r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/provisioned-concurrency/?$"] = LambdaResponse.dispatch


provisioned_concurrency()

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
    elif primary["rolloutState"] == "COMPLETED":
        # A completed deployment runs what the service asks for, as ECS scales it.
        primary.update(runningCount=service.desired_count, desiredCount=service.desired_count)


while True:
    time.sleep(0.05)
    try:
        for regions in list(ecs_backends.values()):
            for backend in list(regions.values()):
                for service in list(backend.services.values()):
                    if (service.deployment_controller or {}).get("type", "ECS") == "ECS":
                        progress(service)
        refresh_instances()
        sweep_target_groups()
    except RuntimeError:
        pass  # a dict changed size under us: try again next tick
    except Exception as error:  # keep serving; the test sees the state it left
        print(f"moto_ecs: {error!r}", file=sys.stderr)
