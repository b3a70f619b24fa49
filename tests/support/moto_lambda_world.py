"""Create the AWS world of the Lambda end-to-end suite in a moto server.

Function `api` with published versions 1, 2 and 3 (each different code), its `$LATEST`
changed again since (so publishing makes version 4), and alias `live` on version 1 with
no weights: what API Gateway invokes. With PC given, the alias has that much
provisioned concurrency (the test ground's, see moto_ecs.py).

Usage: python moto_lambda_world.py ENDPOINT [PC]  -> prints {"function", "alias"} as JSON.
"""
import io
import json
import sys
import zipfile

import boto3

endpoint = sys.argv[1]
pc = int(sys.argv[2]) if len(sys.argv) > 2 else 0
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
lam, iam = boto3.client("lambda", **kw), boto3.client("iam", **kw)


def code(n):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", f"def handler(event, context):\n    return {{'statusCode': 200, 'body': 'v{n}'}}\n")
    return buf.getvalue()


role = iam.create_role(RoleName="api-fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
lam.create_function(FunctionName="api", Runtime="python3.12", Role=role, Handler="app.handler", Code={"ZipFile": code(1)})
versions = [lam.publish_version(FunctionName="api")["Version"]]
for n in (2, 3):
    lam.update_function_code(FunctionName="api", ZipFile=code(n))
    versions.append(lam.publish_version(FunctionName="api")["Version"])
assert versions == ["1", "2", "3"], versions
lam.update_function_code(FunctionName="api", ZipFile=code(4))
alias = lam.create_alias(FunctionName="api", Name="live", FunctionVersion="1")["AliasArn"]
if pc:
    lam.put_provisioned_concurrency_config(FunctionName="api", Qualifier="live", ProvisionedConcurrentExecutions=pc)
print(json.dumps({"function": "api", "alias": alias}))
