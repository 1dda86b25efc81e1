#!/usr/bin/env python3
"""Test fixtures through boto3, an S3 client independent of s3linkfs.

Used by scripts/test.sh, scripts/demo.sh and tests/common/mod.rs, so what the
tests check against is written by another implementation.

Server from the environment: S3_ENDPOINT, S3_REGION, S3_ACCESS_KEY, S3_SECRET_KEY.

    s3fixture.py mkbucket BUCKET             create it (already ours is fine)
    s3fixture.py put BUCKET KEY FILE [TYPE]  upload FILE as KEY
    s3fixture.py batch                       lines on stdin, fields hex-encoded UTF-8
                                             (so any key passes), tab-separated:
                                               put <bucket> <key> <file path> [<extra>]
                                               head <bucket> <key> -
                                               headfull <bucket> <key> -
                                               count <bucket> <prefix> -
                                               delete <bucket> <key> -
                                               putmany <bucket> <prefix> <count>
                                               get <bucket> <key> <file path>
                                               headx <bucket> <key> -
                                               list <bucket> <prefix> -
                                               uploads <bucket> <prefix> -
                                               rmprefix <bucket> <prefix> -
                                               mkbucket <bucket> - -
                                             <extra>: hex of `Name<TAB>value` lines
                                             (ContentType, CacheControl, ...,
                                             meta:<name>) passed to put_object;
                                             head prints `found<TAB>size<TAB>etag` or
                                             `missing`; headfull one `name<TAB>hex value`
                                             line per header; count the key count;
                                             get writes the body to the file and prints
                                             `found<TAB>md5` or `missing`; headx prints
                                             `found` then `name<TAB>hex value` lines
                                             (size, etag, content-type,
                                             content-disposition, cache-control,
                                             meta.<name>); list and uploads print one
                                             hex key per line; rmprefix deletes every
                                             object and aborts every upload under it
"""
import os
import sys

import boto3
import botocore
from botocore.config import Config


def client():
    kw = dict(signature_version="s3v4", s3={"addressing_style": "path"},
              retries={"max_attempts": 3}, max_pool_connections=16)
    try:
        # boto3 >= 1.36 adds CRC checksums to every upload by default; Ceph RGW 16
        # and other older servers reject them. Only send them where required.
        cfg = Config(request_checksum_calculation="when_required",
                     response_checksum_validation="when_required", **kw)
    except TypeError:
        cfg = Config(**kw)
    e = os.environ
    s3 = boto3.client("s3", endpoint_url=e["S3_ENDPOINT"], region_name=e["S3_REGION"],
                      aws_access_key_id=e["S3_ACCESS_KEY"],
                      aws_secret_access_key=e["S3_SECRET_KEY"], config=cfg)
    # Garage leaves a kept-alive connection unusable after answering an empty
    # PUT sent with `Expect: 100-continue` (the next request on it stalls until
    # the read timeout); boto3 sends that header on every PutObject. Fixtures
    # are small and local, so the header buys nothing: drop it.
    def no_expect(request, **_):
        if "Expect" in request.headers:
            del request.headers["Expect"]
    s3.meta.events.register("before-send.s3", no_expect)
    return s3


def mkbucket(s3, bucket):
    try:
        s3.create_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def put(s3, bucket, key, path, content_type=None, extra=None):
    extra = dict(extra or {})
    if content_type:
        extra["ContentType"] = content_type
    with open(path, "rb") as f:
        s3.put_object(Bucket=bucket, Key=key, Body=f.read(), **extra)


def parse_extra(field):
    kw = {}
    for item in bytes.fromhex(field).decode().split("\n"):
        if not item:
            continue
        name, value = item.split("\t", 1)
        if name.startswith("meta:"):
            kw.setdefault("Metadata", {})[name[5:]] = value
        else:
            kw[name] = value
    return kw


def put_many(s3, bucket, prefix, count):
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        s3.put_object(Bucket=bucket, Key="%sf%05d" % (prefix, i), Body=b"%d\n" % i)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(count)))


def count(s3, bucket, prefix):
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        n += page.get("KeyCount", 0)
    return n


def head_full(s3, bucket, key):
    try:
        r = s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as err:
        if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return ["missing"]
        raise
    fields = [("size", str(r["ContentLength"])), ("etag", r["ETag"])]
    for name in ("ContentType", "ContentDisposition", "CacheControl", "ContentEncoding",
                 "ContentLanguage"):
        if name in r:
            fields.append((name, r[name]))
    for name, value in sorted(r.get("Metadata", {}).items()):
        fields.append(("meta:" + name, value))
    return ["%s\t%s" % (name, value.encode().hex()) for name, value in fields]


def head(s3, bucket, key):
    try:
        r = s3.head_object(Bucket=bucket, Key=key)
        return "found\t%d\t%s" % (r["ContentLength"], r["ETag"])
    except botocore.exceptions.ClientError as err:
        if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return "missing"
        raise


def missing(err):
    return err.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound")


def get(s3, bucket, key, path):
    import hashlib
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as err:
        if missing(err):
            return "missing"
        raise
    with open(path, "wb") as f:
        f.write(body)
    return "found\t%s" % hashlib.md5(body).hexdigest()


def head_x(s3, bucket, key):
    try:
        r = s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as err:
        if missing(err):
            return ["missing"]
        raise
    out = {"size": str(r["ContentLength"]), "etag": r["ETag"]}
    for name, field in (("content-type", "ContentType"),
                        ("content-disposition", "ContentDisposition"),
                        ("cache-control", "CacheControl")):
        if r.get(field) is not None:
            out[name] = r[field]
    for k, v in r.get("Metadata", {}).items():
        out["meta." + k] = v
    return ["found"] + ["%s\t%s" % (k, v.encode().hex()) for k, v in out.items()]


def list_keys(s3, bucket, prefix):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def uploads(s3, bucket, prefix):
    return s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])


def rm_prefix(s3, bucket, prefix):
    for k in list_keys(s3, bucket, prefix):
        s3.delete_object(Bucket=bucket, Key=k)
    for u in uploads(s3, bucket, prefix):
        s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])


def batch(s3):
    unhex = lambda f: bytes.fromhex(f).decode("utf-8")
    for line in sys.stdin:
        parts = line.rstrip("\n").split("\t")
        op, bucket, key, path = parts[:4]
        extra = parse_extra(parts[4]) if len(parts) > 4 else {}
        if op == "put":
            put(s3, unhex(bucket), unhex(key), path, extra=extra)
        elif op == "head":
            print(head(s3, unhex(bucket), unhex(key)), flush=True)
        elif op == "headfull":
            for out in head_full(s3, unhex(bucket), unhex(key)):
                print(out, flush=True)
        elif op == "count":
            print(count(s3, unhex(bucket), unhex(key)), flush=True)
        elif op == "delete":
            s3.delete_object(Bucket=unhex(bucket), Key=unhex(key))
        elif op == "putmany":
            put_many(s3, unhex(bucket), unhex(key), int(path))
        elif op == "get":
            print(get(s3, unhex(bucket), unhex(key), path), flush=True)
        elif op == "headx":
            for out in head_x(s3, unhex(bucket), unhex(key)):
                print(out, flush=True)
        elif op == "list":
            for k in list_keys(s3, unhex(bucket), unhex(key)):
                print(k.encode().hex(), flush=True)
        elif op == "uploads":
            for u in uploads(s3, unhex(bucket), unhex(key)):
                print(u["Key"].encode().hex(), flush=True)
        elif op == "rmprefix":
            rm_prefix(s3, unhex(bucket), unhex(key))
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
