#!/usr/bin/env python3
"""Small measuring tools for scripts/bench.sh (stdlib only, except boto-presign).

Server from the environment: S3_ENDPOINT, S3_REGION, S3_ACCESS_KEY, S3_SECRET_KEY
(the same contract as scripts/s3fixture.py). Every timing is taken inside the
process, so interpreter start-up is never counted on either side.

    bench_helper.py list BUCKET PREFIX
        Raw ListObjectsV2 (delimiter '/', 1000 keys a page, following
        continuation tokens) on one kept-alive connection, SigV4 signed here.
        Prints "<entries> <seconds>".
    bench_helper.py randread PATH COUNT SEED
        COUNT reads of 4 KiB at seeded 4 KiB-aligned offsets with os.pread.
        Prints "<reads per second>".
    bench_helper.py rangeget URL SIZE COUNT SEED
        The same offsets as randread, as ranged GETs of a presigned URL, one
        connection each (see rangeget). Prints "<reads per second>".
    bench_helper.py xattr-rate PATH NAME SECONDS
        os.getxattr(PATH, NAME) in a loop for SECONDS. Prints "<calls per second>".
    bench_helper.py boto-presign-rate BUCKET KEY SECONDS
        botocore's generate_presigned_url in a loop for SECONDS.
        Prints "<calls per second>".
    bench_helper.py proxy PORTFILE LOGFILE
        An HTTP/1.1 relay to S3_ENDPOINT on a free 127.0.0.1 port (written to
        PORTFILE) that appends one line per request ("METHOD TARGET") to
        LOGFILE. Runs until killed.
"""
import datetime
import hashlib
import hmac
import http.client
import os
import random
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def server():
    e = os.environ
    url = urllib.parse.urlsplit(e["S3_ENDPOINT"])
    return url, e["S3_REGION"], e["S3_ACCESS_KEY"], e["S3_SECRET_KEY"]


def q(s):
    return urllib.parse.quote(s, safe="-_.~")


def sign_get(host, path, query, region, ak, sk):
    """SigV4 headers for a GET of path?query (query: list of (name, value))."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    cq = "&".join("%s=%s" % (q(k), q(v)) for k, v in sorted(query))
    headers = {"host": host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(["GET", path, cq] + ["%s:%s" % (k, headers[k]) for k in sorted(headers)]
                          + ["", signed, EMPTY_SHA256])
    scope = "%s/%s/s3/aws4_request" % (day, region)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + sk).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        ak, scope, signed, sig)
    return cq, headers


def raw_list(bucket, prefix):
    url, region, ak, sk = server()
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
    host = url.netloc
    token, entries = None, 0
    t0 = time.perf_counter()
    while True:
        query = [("list-type", "2"), ("prefix", prefix), ("delimiter", "/"), ("max-keys", "1000")]
        if token:
            query.append(("continuation-token", token))
        cq, headers = sign_get(host, "/" + q(bucket), query, region, ak, sk)
        conn.request("GET", "/%s?%s" % (q(bucket), cq), headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            sys.exit("LIST answered %d: %s" % (resp.status, body[:300]))
        root = ET.fromstring(body)
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        entries += len(root.findall(ns + "Contents")) + len(root.findall(ns + "CommonPrefixes"))
        if root.findtext(ns + "IsTruncated") == "true":
            token = root.findtext(ns + "NextContinuationToken")
        else:
            break
    print(entries, "%.6f" % (time.perf_counter() - t0))


def offsets(size, count, seed):
    rng = random.Random(int(seed))
    blocks = size // 4096
    return [rng.randrange(blocks) * 4096 for _ in range(count)]


def randread(path, count, seed):
    count = int(count)
    fd = os.open(path, os.O_RDONLY)
    try:
        offs = offsets(os.fstat(fd).st_size, count, seed)
        t0 = time.perf_counter()
        for off in offs:
            if len(os.pread(fd, 4096, off)) != 4096:
                sys.exit("short read at %d" % off)
        dt = time.perf_counter() - t0
    finally:
        os.close(fd)
    print("%.1f" % (count / dt))


def rangeget(url, size, count, seed):
    count = int(count)
    u = urllib.parse.urlsplit(url)
    target = u.path + ("?" + u.query if u.query else "")
    offs = offsets(int(size), count, seed)
    t0 = time.perf_counter()
    for off in offs:
        # A new connection each time: on a reused one Garage answers small
        # ranges about 40 ms late (curl -K shows the same), which would make
        # the reference meaninglessly slow.
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
        conn.request("GET", target, headers={"Range": "bytes=%d-%d" % (off, off + 4095)})
        resp = conn.getresponse()
        if resp.status != 206 or len(resp.read()) != 4096:
            sys.exit("ranged GET answered %d" % resp.status)
        conn.close()
    dt = time.perf_counter() - t0
    print("%.1f" % (count / dt))


def xattr_rate(path, name, seconds):
    seconds = float(seconds)
    n, getx = 0, os.getxattr
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(100):
            getx(path, name)
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            break
    print("%.0f" % (n / (now - t0)))


def boto_presign_rate(bucket, key, seconds):
    import boto3
    from botocore.config import Config

    url, region, ak, sk = server()
    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name=region,
                      aws_access_key_id=ak, aws_secret_access_key=sk,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    seconds = float(seconds)
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(10):
            s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                      ExpiresIn=604800)
        n += 10
        now = time.perf_counter()
        if now >= deadline:
            break
    print("%.0f" % (n / (now - t0)))


def proxy(portfile, logfile):
    """Relays bytes both ways and parses only the client's request stream (heads
    and Content-Length or chunked bodies) to log one line per request."""
    import asyncio

    url, _, _, _ = server()
    up_host, up_port = url.hostname, url.port or 80
    log = open(logfile, "a", buffering=1)

    async def pipe(reader, writer):
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def requests(reader, writer):
        async def fwd(data):
            writer.write(data)
            await writer.drain()
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await fwd(head)
                lines = head.decode("latin-1").split("\r\n")
                log.write(" ".join(lines[0].split(" ")[:2]) + "\n")
                hdrs = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        hdrs[k.strip().lower()] = v.strip()
                if "chunked" in hdrs.get("transfer-encoding", "").lower():
                    while True:
                        size_line = await reader.readuntil(b"\r\n")
                        await fwd(size_line)
                        size = int(size_line.split(b";")[0].strip(), 16)
                        if size == 0:
                            while True:
                                trailer = await reader.readuntil(b"\r\n")
                                await fwd(trailer)
                                if trailer == b"\r\n":
                                    break
                            break
                        await fwd(await reader.readexactly(size + 2))
                else:
                    left = int(hdrs.get("content-length", "0"))
                    while left > 0:
                        data = await reader.read(min(left, 1 << 16))
                        if not data:
                            return
                        await fwd(data)
                        left -= len(data)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def handle(c_reader, c_writer):
        try:
            u_reader, u_writer = await asyncio.open_connection(up_host, up_port)
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(requests(c_reader, u_writer), pipe(u_reader, c_writer))

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
        port = srv.sockets[0].getsockname()[1]
        tmp = portfile + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, portfile)
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


def main(argv):
    cmds = {"list": (raw_list, 2), "randread": (randread, 3), "rangeget": (rangeget, 4),
            "xattr-rate": (xattr_rate, 3), "boto-presign-rate": (boto_presign_rate, 3),
            "proxy": (proxy, 2)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        sys.exit(__doc__)
    cmds[argv[1]][0](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
