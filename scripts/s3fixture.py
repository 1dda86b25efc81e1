#!/usr/bin/env python3
"""Test fixtures through boto3, an S3 client independent of s3linkfs.

Used by scripts/test.sh, scripts/demo.sh and tests/common/mod.rs, so what the
tests check against is written by another implementation.

Server from the environment: S3_ENDPOINT, S3_REGION, S3_ACCESS_KEY, S3_SECRET_KEY.

    s3fixture.py mkbucket BUCKET             create it (already ours is fine)
    s3fixture.py put BUCKET KEY FILE [TYPE]  upload FILE as KEY
    s3fixture.py batch                       lines on stdin, fields hex-encoded UTF-8
                                             (so any key passes), tab-separated:
                                               put <bucket> <key> <file path>
                                               head <bucket> <key> -
                                               mkbucket <bucket> - -
                                             head prints `found<TAB>size<TAB>etag` or `missing`
"""
import os
import sys

import boto3
import botocore
from botocore.config import Config


def client():
    kw = dict(signature_version="s3v4", s3={"addressing_style": "path"},
              retries={"max_attempts": 3})
    try:
        # boto3 >= 1.36 adds CRC checksums to every upload by default; Ceph RGW 16
        # and other older servers reject them. Only send them where required.
        cfg = Config(request_checksum_calculation="when_required",
                     response_checksum_validation="when_required", **kw)
    except TypeError:
        cfg = Config(**kw)
    e = os.environ
    return boto3.client("s3", endpoint_url=e["S3_ENDPOINT"], region_name=e["S3_REGION"],
                        aws_access_key_id=e["S3_ACCESS_KEY"],
                        aws_secret_access_key=e["S3_SECRET_KEY"], config=cfg)


def mkbucket(s3, bucket):
    try:
        s3.create_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def put(s3, bucket, key, path, content_type=None):
    with open(path, "rb") as f:
        extra = {"ContentType": content_type} if content_type else {}
        s3.put_object(Bucket=bucket, Key=key, Body=f.read(), **extra)


def head(s3, bucket, key):
    try:
        r = s3.head_object(Bucket=bucket, Key=key)
        return "found\t%d\t%s" % (r["ContentLength"], r["ETag"])
    except botocore.exceptions.ClientError as err:
        if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return "missing"
        raise


def batch(s3):
    unhex = lambda f: bytes.fromhex(f).decode("utf-8")
    for line in sys.stdin:
        op, bucket, key, path = line.rstrip("\n").split("\t")
        if op == "put":
            put(s3, unhex(bucket), unhex(key), path)
        elif op == "head":
            print(head(s3, unhex(bucket), unhex(key)), flush=True)
        elif op == "mkbucket":
            mkbucket(s3, unhex(bucket))
        else:
            sys.exit("s3fixture.py: unknown batch op " + op)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    s3 = client()
    op, args = argv[1], argv[2:]
    if op == "mkbucket" and len(args) == 1:
        mkbucket(s3, *args)
    elif op == "put" and len(args) in (3, 4):
        put(s3, *args)
    elif op == "batch" and not args:
        batch(s3)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
