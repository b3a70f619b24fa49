"""The quickstart's stand-ins for what moto does not run: the apps, ECS's agent and the
ALB's data plane. Everything binds 127.0.0.1.

- Two versions of a demo app: `good` answers 200 everywhere; `bad` answers 500 on
  /health (a release that passes the build but is broken in production).
- An agent that does what ECS and the ALB do for task sets: a task set scaled to N%
  of the service gets that many tasks, registered in its target group. A task runs the
  good app unless its task definition's image is the bad one.
- The ALB data plane: one local port per listener (production and test) forwarding each
  request to a healthy target of a target group picked by the listener's weights, read
  from moto at request time.

Usage: python ground.py ENDPOINT BAD_IMAGE  -> prints the listener ports as JSON, then
serves until killed.
"""
import http.server
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request

import boto3

endpoint, bad_image = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
ecs, elb = boto3.client("ecs", **kw), boto3.client("elbv2", **kw)


def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def app(version, health_status):
    class App(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status = health_status if self.path.startswith("/health") else 200
            body = f"{version}: {'ok' if status == 200 else 'broken'}\n".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return serve(App)


apps = {"good": app("good", 200), "bad": app("bad", 500)}
task_port = {}  # task IP -> the app port serving it


def reconcile():
    service = ecs.describe_services(cluster="prod", services=["web"])["services"][0]
    wanted = {tg["TargetGroupArn"]: set() for tg in elb.describe_target_groups()["TargetGroups"]}
    for task_set in service.get("taskSets", []):
        if not task_set.get("loadBalancers"):
            continue
        tg = task_set["loadBalancers"][0]["targetGroupArn"]
        definition = ecs.describe_task_definition(taskDefinition=task_set["taskDefinition"])["taskDefinition"]
        image = definition["containerDefinitions"][0]["image"]
        revision = definition["revision"]
        units = round(task_set["scale"]["value"] * service["desiredCount"] / 100)
        for i in range(1, units + 1):
            ip = f"10.0.{revision}.{i}"
            task_port[ip] = apps["bad" if image == bad_image else "good"]
            wanted.setdefault(tg, set()).add(ip)
    for tg, ips in wanted.items():
        present = {d["Target"]["Id"] for d in elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]}
        if ips - present:
            elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": ip, "Port": 8080} for ip in ips - present])
        if present - ips:
            elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": ip, "Port": 8080} for ip in present - ips])


def agent():
    while True:
        try:
            reconcile()
        except Exception as err:  # moto restarting, a task set vanishing mid-read: next tick
            print(f"agent: {err}", file=sys.stderr)
        time.sleep(0.1)


def pick_target(listener_arn):
    actions = elb.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]["DefaultActions"]
    forward = actions[0].get("ForwardConfig", {}).get("TargetGroups") or [
        {"TargetGroupArn": actions[0]["TargetGroupArn"], "Weight": 1}
    ]
    groups = [g for g in forward if g.get("Weight", 1) > 0]
    if not groups:
        return None
    tg = random.choices(groups, weights=[g.get("Weight", 1) for g in groups])[0]["TargetGroupArn"]
    health = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    ips = [d["Target"]["Id"] for d in health if d["TargetHealth"]["State"] == "healthy" and d["Target"]["Id"] in task_port]
    return task_port[random.choice(ips)] if ips else None


def listener(listener_arn):
    class Alb(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            port = pick_target(listener_arn)
            if port is None:
                status, body = 503, b"no healthy targets\n"
            else:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{self.path}", timeout=5) as r:
                        status, body = r.status, r.read()
                except urllib.error.HTTPError as err:
                    status, body = err.code, err.read()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return serve(Alb)


listeners = {}
for lb in elb.describe_load_balancers()["LoadBalancers"]:
    for each in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]:
        listeners[each["Port"]] = each["ListenerArn"]
reconcile()
threading.Thread(target=agent, daemon=True).start()
print(json.dumps({"production": listener(listeners[80]), "test": listener(listeners[8443])}), flush=True)
threading.Event().wait()
