"""Create the AWS world of the ECS end-to-end suites in a moto server.

An ALB with a production listener (weighted forward to two target groups, blue at
100%) and a test listener, an ECS cluster with task definitions web:1..web:3, an
EXTERNAL-controller service `web` (desired 4) whose primary task set runs web:1 behind
blue, an ECS-controller service `api` (desired 2) running web:1, and a CloudWatch alarm
`web-5xx` in OK.

Usage: python moto_world.py ENDPOINT  -> prints the ARNs as JSON.
"""
import json
import sys

import boto3

endpoint = sys.argv[1]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
ec2, elb, ecs, cw, s3, ddb = (boto3.client(s, **kw) for s in ("ec2", "elbv2", "ecs", "cloudwatch", "s3", "dynamodb"))

vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
subnets = [
    ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
    for i, az in ((1, "a"), (2, "b"))
]
lb = elb.create_load_balancer(Name="shop", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
blue, green = (
    elb.create_target_group(Name=n, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    for n in ("web-blue", "web-green")
)
forward = lambda weights: [{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": a, "Weight": w} for a, w in weights]}}]
listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=forward([(blue, 100), (green, 0)]))["Listeners"][0]["ListenerArn"]
# Path-based routing on a listener rule, as several services share one ALB.
rule = elb.create_rule(
    ListenerArn=listener, Priority=10, Conditions=[{"Field": "path-pattern", "Values": ["/web/*"]}],
    Actions=forward([(blue, 100), (green, 0)]),
)["Rules"][0]["RuleArn"]
test_listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=8443, DefaultActions=forward([(blue, 1)]))["Listeners"][0]["ListenerArn"]

ecs.create_cluster(clusterName="prod")
for revision in (1, 2, 3):
    ecs.register_task_definition(
        family="web",
        containerDefinitions=[{"name": "web", "image": f"shop/web:{revision}", "memory": 256, "portMappings": [{"containerPort": 8080}]}],
    )
ecs.create_service(cluster="prod", serviceName="web", desiredCount=4, deploymentController={"type": "EXTERNAL"})
network = {"awsvpcConfiguration": {"subnets": subnets}}
primary = ecs.create_task_set(
    cluster="prod", service="web", taskDefinition="web:1", launchType="FARGATE", networkConfiguration=network,
    loadBalancers=[{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080}],
    scale={"value": 100, "unit": "PERCENT"},
)["taskSet"]["taskSetArn"]
ecs.update_service_primary_task_set(cluster="prod", service="web", primaryTaskSet=primary)

# A second service on the ECS deployment controller, for rolling updates in place.
ecs.create_service(
    cluster="prod", serviceName="api", taskDefinition="web:1", desiredCount=2, launchType="FARGATE",
    networkConfiguration={"awsvpcConfiguration": {"subnets": subnets, "securityGroups": []}},
)

cw.put_metric_alarm(
    AlarmName="web-5xx", MetricName="HTTPCode_Target_5XX_Count", Namespace="AWS/ApplicationELB",
    Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=10, ComparisonOperator="GreaterThanThreshold",
)
cw.set_alarm_state(AlarmName="web-5xx", StateValue="OK", StateReason="healthy")

# The team backend's state: journals in S3, locks in DynamoDB.
s3.create_bucket(Bucket="deployer-state")
ddb.create_table(
    TableName="deployer-locks", BillingMode="PAY_PER_REQUEST",
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
)

print(json.dumps({"rule": rule, "listener": listener, "test_listener": test_listener, "blue": blue, "green": green}))
