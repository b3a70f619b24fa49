"""Create the AWS world of the Auto Scaling end-to-end suite in a moto server.

An ALB whose production listener forwards to two instance target groups (blue at
100%), a launch template `web` with versions 1..3, two groups for side-by-side
deployments (`web-blue`: web:1 x2 behind blue; `web-green`: web:1 x0 behind green) and
one group updated in place (`api`: web:1 x3, min 2 max 6, behind its own group).

Usage: python moto_asg_world.py ENDPOINT [REGION]  -> prints the ARNs as JSON. REGION
(default us-east-1) puts the world in another region of the same moto.
"""
import json
import sys

import boto3

endpoint = sys.argv[1]
region = sys.argv[2] if len(sys.argv) > 2 else "us-east-1"
kw = dict(endpoint_url=endpoint, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")
ec2, elb, asg = (boto3.client(s, **kw) for s in ("ec2", "elbv2", "autoscaling"))

vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
subnets = [
    ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=f"{region}{az}")["Subnet"]["SubnetId"]
    for i, az in ((1, "a"), (2, "b"))
]
lb = elb.create_load_balancer(Name="bets", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
blue, green, api = (
    elb.create_target_group(Name=n, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    for n in ("bets-blue", "bets-green", "bets-api")
)
forward = lambda weights: [{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": a, "Weight": w} for a, w in weights]}}]
listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=forward([(blue, 100), (green, 0)]))["Listeners"][0]["ListenerArn"]

for size in ("t3.micro", "t3.small", "t3.medium"):
    data = {"ImageId": "ami-12c6146b", "InstanceType": size}
    if size == "t3.micro":
        ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData=data)
    else:
        ec2.create_launch_template_version(LaunchTemplateName="web", LaunchTemplateData=data)

zones = ",".join(subnets)
for name, desired, tg, (low, high) in (("web-blue", 2, blue, (0, 4)), ("web-green", 0, green, (0, 4)), ("api", 3, api, (2, 6))):
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": "web", "Version": "1"},
        MinSize=low, MaxSize=high, DesiredCapacity=desired, VPCZoneIdentifier=zones, TargetGroupARNs=[tg],
    )

print(json.dumps({"listener": listener, "blue": blue, "green": green, "api": api}))
