# Shared by scripts/test.sh and scripts/demo.sh (sourced, not run): the local test
# servers' coordinates and a readiness probe. The start-*.sh scripts use the same
# defaults (RGW_PORT, GARAGE_S3_PORT and their ACCESS_KEY / SECRET_KEY).

EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

# server_env NAME: sets ENDPOINT REGION ACCESS SECRET for the local `rgw` or `garage`
server_env() {
  case $1 in
    rgw)
      ENDPOINT=http://127.0.0.1:${RGW_PORT:-7480}; REGION=us-east-1
      ACCESS=AKIDEXAMPLE; SECRET=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY ;;
    garage)
      ENDPOINT=http://127.0.0.1:${GARAGE_S3_PORT:-3900}; REGION=garage
      ACCESS=GKTESTACCESSKEY000000000
      SECRET=0000000000000000000000000000000000000000000000000000000000000000 ;;
    *) echo "unknown server $1 (rgw or garage)" >&2; return 1 ;;
  esac
}

# answers: true when a SigV4-signed ListBuckets to $ENDPOINT with $ACCESS/$SECRET returns 200
answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 --aws-sigv4 "aws:amz:$REGION:s3" \
    -H "x-amz-content-sha256: $EMPTY_SHA256" --user "$ACCESS:$SECRET" "$ENDPOINT/" 2>/dev/null)
  [ "$code" = 200 ]
}
