"""Create, in a moto server, an ECS service the way most teams have one (issue #16).

Terraform made it: no `deployment_controller` block (the ECS controller), Fargate,
behind an ALB, scaled by Application Auto Scaling between 2 and 10 tasks on CPU, at 7
tasks now. To deploy it side by side it is a pair: `store-blue` (live, 7 tasks, behind
`store-blue`'s target group, which the listener sends 100% of traffic) and `store-green`
(idle, 0 tasks, behind `store-green`), each with its own scalable target (2–10 on the
live side, 0–10 on the idle one) and target-tracking policy, as the Terraform sketch in
docs/targets.md makes them. Task definition
`store:1` has an app container with environment and secrets and a log-router sidecar.

Usage: python moto_pair_world.py ENDPOINT  -> prints the ARNs as JSON.
"""
import json
import sys

import boto3

endpoint = sys.argv[1]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
ec2, elb, ecs, cw, aas = (boto3.client(s, **kw) for s in ("ec2", "elbv2", "ecs", "cloudwatch", "application-autoscaling"))

vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
subnets = [
    ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
    for i, az in ((1, "a"), (2, "b"))
]
lb = elb.create_load_balancer(Name="store", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
blue, green = (
    elb.create_target_group(Name=n, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    for n in ("store-blue", "store-green")
)
forward = [{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": blue, "Weight": 100}, {"TargetGroupArn": green, "Weight": 0}]}}]
listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=forward)["Listeners"][0]["ListenerArn"]

ecs.create_cluster(clusterName="prod")
for revision in (1, 2, 3):
    ecs.register_task_definition(
        family="store",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="512",
        memory="1024",
        executionRoleArn="arn:aws:iam::123456789012:role/store-exec",
        taskRoleArn="arn:aws:iam::123456789012:role/store-task",
        containerDefinitions=[
            {
                "name": "app", "image": f"shop/store:{revision}", "memory": 512, "essential": True,
                "portMappings": [{"containerPort": 8080}],
                "environment": [{"name": "STAGE", "value": "prod"}],
                "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db"}],
            },
            {"name": "log-router", "image": "amazon/aws-for-fluent-bit:2.32", "memory": 64, "essential": False},
        ],
    )
network = {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": []}}
# The idle side's minimum is 0 (docs/targets.md), or the autoscaler could start tasks there.
for name, tg, count, minimum in (("store-blue", blue, 7, 2), ("store-green", green, 0, 0)):
    ecs.create_service(
        cluster="prod", serviceName=name, taskDefinition="store:1", desiredCount=count, launchType="FARGATE",
        networkConfiguration=network,
        loadBalancers=[{"targetGroupArn": tg, "containerName": "app", "containerPort": 8080}],
    )
    resource = f"service/prod/{name}"
    aas.register_scalable_target(
        ServiceNamespace="ecs", ResourceId=resource, ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=minimum, MaxCapacity=10,
    )
    aas.put_scaling_policy(
        PolicyName=f"{name}-cpu", ServiceNamespace="ecs", ResourceId=resource,
        ScalableDimension="ecs:service:DesiredCount", PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 70.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
        },
    )

print(json.dumps({"listener": listener, "blue": blue, "green": green, "lb": lb}))
