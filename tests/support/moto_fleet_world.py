"""Create the AWS world of the release benchmark (benches/release_fleet.rs) in a moto server.

COUNT ECS services `svc01`, `svc02`, ... in cluster `fleet`, each as a team runs one
behind a shared ALB: EXTERNAL deployment controller, desired count 4, its primary task
set running `svcNN:1` behind its own blue target group, and its own listener rule
(path `/svcNN/*`) forwarding 100% to blue and 0% to its green group. Task definitions
`svcNN:1..3` are registered so releases can alternate between 2 and 3.

The rules sit on a few ALBs, 25 services each (50 target groups): within AWS's default
quotas of 100 rules per listener and 100 target groups per load balancer, as a
company's shared ALBs are. The listeners' default action answers 404.

Usage: python moto_fleet_world.py ENDPOINT COUNT  -> prints the services as JSON:
{"cluster": "fleet", "services": [{"name", "rule", "blue", "green"}, ...]}
"""
import json
import sys

import boto3

SERVICES_PER_ALB = 25

endpoint, count = sys.argv[1], int(sys.argv[2])
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
ec2, elb, ecs = (boto3.client(s, **kw) for s in ("ec2", "elbv2", "ecs"))

vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
subnets = [
    ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
    for i, az in ((1, "a"), (2, "b"))
]
network = {"awsvpcConfiguration": {"subnets": subnets}}
not_found = [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain"}}]
forward = lambda weights: [{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": a, "Weight": w} for a, w in weights]}}]

ecs.create_cluster(clusterName="fleet")
listener = None
services = []
for i in range(1, count + 1):
    name = f"svc{i:02d}"
    if (i - 1) % SERVICES_PER_ALB == 0:
        lb = elb.create_load_balancer(Name=f"shared-{(i - 1) // SERVICES_PER_ALB + 1}", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
        listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=not_found)["Listeners"][0]["ListenerArn"]
    blue, green = (
        elb.create_target_group(Name=f"{name}-{side}", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
        for side in ("blue", "green")
    )
    rule = elb.create_rule(
        ListenerArn=listener, Priority=i, Conditions=[{"Field": "path-pattern", "Values": [f"/{name}/*"]}],
        Actions=forward([(blue, 100), (green, 0)]),
    )["Rules"][0]["RuleArn"]
    for revision in (1, 2, 3):
        ecs.register_task_definition(
            family=name,
            containerDefinitions=[{"name": "app", "image": f"shop/{name}:{revision}", "memory": 256, "portMappings": [{"containerPort": 8080}]}],
        )
    ecs.create_service(cluster="fleet", serviceName=name, desiredCount=4, deploymentController={"type": "EXTERNAL"})
    primary = ecs.create_task_set(
        cluster="fleet", service=name, taskDefinition=f"{name}:1", launchType="FARGATE", networkConfiguration=network,
        loadBalancers=[{"targetGroupArn": blue, "containerName": "app", "containerPort": 8080}],
        scale={"value": 100, "unit": "PERCENT"},
    )["taskSet"]["taskSetArn"]
    ecs.update_service_primary_task_set(cluster="fleet", service=name, primaryTaskSet=primary)
    services.append({"name": name, "rule": rule, "blue": blue, "green": green})

print(json.dumps({"cluster": "fleet", "services": services}))
