#!/bin/bash
# A session against a running `diagnosis serve` (Online Boutique), as an SRE would see it.
# Usage: PYTHON=.venv/bin/python bash docs/serve-session.sh   (needs curl and jq; loopback only)
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
D=$(mktemp -d)
echo "demo-token-$(date +%s)" > $D/token; TOKEN=$(cat $D/token)
$PY -m diagnosis serve --topology tests/data/serve/online-boutique.yaml --state $D/state.sqlite \
    --log $D/incidents.jsonl --port 0 --token-file $D/token --execute --approval --rate-limit 2 --min-success 0.2 > $D/server.out 2>&1 &
SERVER=$!
for i in $(seq 100); do grep -q listening $D/server.out 2>/dev/null && break; sleep 0.1; done
cat $D/server.out
URL=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' $D/server.out)
H="Authorization: Bearer $TOKEN"
note() { # alertname service startsAt fingerprint
  printf '{"version":"4","groupKey":"{}:{alertname=\\"%s\\"}","truncatedAlerts":0,"status":"firing","receiver":"diagnosis","groupLabels":{"alertname":"%s"},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://alertmanager:9093","alerts":[{"status":"firing","labels":{"alertname":"%s","service":"%s","namespace":"shop"},"annotations":{},"startsAt":"%s","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"%s"}]}' "$1" "$1" "$1" "$2" "$3" "$4"
}
show='{status, top3: [.locations[:3][] | "\(.component):\(.fault_mode) \(.probability*1000|round/1000)"], recommended: (.recommended_action | "\(.action) \(.target) P(success)=\(.expected_success*1000|round/1000)"), next_check: .next_check.symptom, timeline: [.timeline[] | "\(.finding)=\(.observation) -> \(.top_component):\(.top_fault_mode)"], hooks: [.hooks[] | "\(.action) \(.target) \(.state) \(.outcome)"], policy_decision}'
echo; echo '$ curl -s $URL/api/v1/incidents    # without the token'
curl -s -o /dev/null -w '%{http_code}\n' $URL/api/v1/incidents
i=0
T1=$(date -u -d '-6 min' +%Y-%m-%dT%H:%M:%SZ); T2=$(date -u -d '-5 min' +%Y-%m-%dT%H:%M:%SZ); T3=$(date -u -d '-4 min' +%Y-%m-%dT%H:%M:%SZ)
for spec in "HighErrorRate frontend $T1 a1" "HighErrorRate checkoutservice $T2 a2" "KubePodCrashLooping checkoutservice $T3 a3"; do
  set -- $spec; i=$((i+1))
  echo; echo "### notification $i: $1 on $2 at $3"
  echo "\$ curl -s -H \"\$H\" -d @notification$i.json $URL/api/v1/alertmanager"
  note $1 $2 $3 $4 | curl -s -H "$H" -H 'Content-Type: application/json' -d @- $URL/api/v1/alertmanager; echo
  ID=$(curl -s -H "$H" $URL/api/v1/incidents | jq -r '.incidents[0].id')
  echo "\$ curl -s -H \"\$H\" $URL/api/v1/incidents/$ID | jq (abridged)"
  curl -s -H "$H" $URL/api/v1/incidents/$ID | jq -c "$show"
done
echo; echo "### the same notification again (Alertmanager repeats it)"
note KubePodCrashLooping checkoutservice $T3 a3 | curl -s -H "$H" -H 'Content-Type: application/json' -d @- $URL/api/v1/alertmanager; echo
echo; echo "### approve the pending restart (its hook is /bin/false: it fails)"
echo "\$ curl -s -X POST -H \"\$H\" $URL/api/v1/incidents/$ID/actions/restart/approve"
curl -s -X POST -H "$H" $URL/api/v1/incidents/$ID/actions/restart/approve > /dev/null; sleep 1
curl -s -H "$H" $URL/api/v1/incidents/$ID | jq -c "$show"
echo; echo "### approve the pending rollback (its hook is /bin/echo: it succeeds)"
echo "\$ curl -s -X POST -H \"\$H\" $URL/api/v1/incidents/$ID/actions/rollback/approve"
curl -s -X POST -H "$H" $URL/api/v1/incidents/$ID/actions/rollback/approve > /dev/null; sleep 1
curl -s -H "$H" $URL/api/v1/incidents/$ID | jq -c "$show"
echo; echo "### close with the confirmed root cause"
echo "\$ curl -s -H \"\$H\" -d '{\"root_cause\": {\"component\": \"checkoutservice\", \"fault_mode\": \"bad_deploy\"}}' $URL/api/v1/incidents/$ID/close"
curl -s -H "$H" -H 'Content-Type: application/json' -d '{"root_cause": {"component": "checkoutservice", "fault_mode": "bad_deploy"}}' $URL/api/v1/incidents/$ID/close | jq -c '{status, resolved, closed_by, logged}'
echo; echo '$ cat incidents.jsonl | jq'
jq -c '.' $D/incidents.jsonl | cut -c1-2000
echo; echo '$ curl -s -H "$H" $URL/metrics | grep ^diagnosis_ | grep -v created'
curl -s -H "$H" $URL/metrics | grep '^diagnosis_' | grep -v created | grep -v bucket
kill $SERVER; wait $SERVER 2>/dev/null
echo; echo "\$ diagnosis report --topology tests/data/serve/online-boutique.yaml incidents.jsonl --incident $ID --out report/"
$PY -m diagnosis report --topology tests/data/serve/online-boutique.yaml $D/incidents.jsonl --incident $ID --out $D/report
ls $D/report
echo "state dir: $D"
