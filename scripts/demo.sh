#!/usr/bin/env bash
# The whole pipeline on generated data, end to end. Re-runnable: it replaces the demo data.
set -euo pipefail
TT=".venv/bin/twotower"
export TWOTOWER_HOME="${TWOTOWER_HOME:-$PWD/.twotower}"
PORT="${TWOTOWER_DEMO_PORT:-8765}"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "database (embedded PostgreSQL + pgvector under $TWOTOWER_HOME/pgdata)"
$TT db init
step "synthetic data"
$TT synth --users 2000 --videos 5000 --decisions 100000 --seed 7 --replace
$TT summary

step "train the two-tower model (config/best.yaml) on the temporal-user split, evaluate beside baselines"
$TT train --config config/best.yaml --split temporal-user --name demo-eval
$TT evaluate -m popularity,ease,"$TWOTOWER_HOME/checkpoints/demo-eval/best.pt" --split temporal-user --run demo

step "production model on all data: export (ONNX + manifest), register, embed into pgvector, activate"
VERSION="demo-$(date +%Y%m%d%H%M%S)"
$TT train --config config/best.yaml --split none --name demo-prod
$TT export "$TWOTOWER_HOME/checkpoints/demo-prod/best.pt" --version "$VERSION"
$TT models register "$TWOTOWER_HOME/artifacts/$VERSION"
$TT embed --version "$VERSION"
$TT models activate "$VERSION"
$TT models list

step "top-10 straight from pgvector"
read -r -a WARM <<< "$($TT sample-users --n 2)"
COLD="$($TT sample-users --n 1 --cold)"
$TT recommend "${WARM[@]}" --limit 10

step "the same from SQL: public.recommend_videos, as supabase.rpc('recommend_videos') calls it"
$TT recommend "${WARM[0]}" "$COLD" --limit 5 --sql

step "incremental refresh (nothing changed since the embed)"
$TT batch-update

step "the HTTP service"
export TWOTOWER_JWT_SECRET="${TWOTOWER_JWT_SECRET:-demo-secret-$(date +%s)-not-for-production}"
$TT serve --port "$PORT" --no-access-log > "$TWOTOWER_HOME/serve-demo.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null && break; sleep 0.5; done
for U in "${WARM[0]}" "$COLD"; do
  TOKEN="$($TT token "$U")"
  echo "POST /v1/recommendations for $U"
  curl -s -X POST "http://127.0.0.1:$PORT/v1/recommendations" -H "Authorization: Bearer $TOKEN" \
       -H 'Content-Type: application/json' -d "{\"user_id\": \"$U\", \"limit\": 5}" \
    | .venv/bin/python -m json.tool
done
step "the swipe deck: a deck, a swipe on its first card, the next page of the same deck"
U="${WARM[1]}"; TOKEN="$($TT token "$U")"
deck() {
  curl -s -X POST "http://127.0.0.1:$PORT/v1/recommendations" -H "Authorization: Bearer $TOKEN" \
       -H 'Content-Type: application/json' -d "{\"user_id\": \"$U\", \"limit\": 5, \"deck_id\": \"demo-deck\"}"
}
FIRST="$(deck)"
echo "$FIRST" | .venv/bin/python -c 'import json,sys; b=json.load(sys.stdin); print("deck 1:", [i["video_id"] for i in b["items"]])'
CARD="$(echo "$FIRST" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["video_id"])')"
curl -s -X POST "http://127.0.0.1:$PORT/v1/decisions" -H "Authorization: Bearer $TOKEN" \
     -H 'Content-Type: application/json' -d "{\"user_id\": \"$U\", \"video_id\": \"$CARD\", \"decision_type\": \"like\"}" \
  | .venv/bin/python -c 'import json,sys; b=json.load(sys.stdin); print("swipe: like", b["video_id"], "recorded at", b["recorded_at"])'
deck | .venv/bin/python -c 'import json,sys; b=json.load(sys.stdin); print("deck 2 (no card of deck 1 again):", [i["video_id"] for i in b["items"]])'
echo "without a token:"; curl -s -X POST "http://127.0.0.1:$PORT/v1/recommendations" \
     -H 'Content-Type: application/json' -d "{\"user_id\": \"${WARM[0]}\"}"; echo
SVC_TOKEN="$($TT token service --service)"
curl -s -o "$TWOTOWER_HOME/dashboard.html" -w "GET /dashboard with a service_role token: %{http_code}, %{size_download} bytes, saved to $TWOTOWER_HOME/dashboard.html\n" \
     -H "Authorization: Bearer $SVC_TOKEN" "http://127.0.0.1:$PORT/dashboard"
step "the seed's Edge Functions under Deno, at /functions/v1/<name> as Supabase serves them"
$TT edge bundle --version "$VERSION" --to "$TWOTOWER_HOME/edge-bundles"
EPORT="${TWOTOWER_DEMO_EDGE_PORT:-8766}"
TWOTOWER_ARTIFACTS="$TWOTOWER_HOME/edge-bundles" $TT edge serve --port "$EPORT" > "$TWOTOWER_HOME/edge-demo.log" 2>&1 &
EDGE=$!
trap 'kill $SERVER $EDGE 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$EPORT/healthz" > /dev/null && break; sleep 0.2; done
for U in "${WARM[0]}" "$COLD"; do
  echo "POST /functions/v1/two_tower_recommendations for $U"
  curl -s -X POST "http://127.0.0.1:$EPORT/functions/v1/two_tower_recommendations" \
       -H "Authorization: Bearer $($TT token "$U")" -H 'Content-Type: application/json' \
       -d "{\"user_id\": \"$U\", \"limit\": 5}" | .venv/bin/python -m json.tool
done
kill $EDGE 2>/dev/null || true
step "done. Serve it yourself: TWOTOWER_JWT_SECRET=... TWOTOWER_SERVICE_KEY=... $TT serve  (API docs at http://127.0.0.1:8000/docs, dashboard at http://127.0.0.1:8000/dashboard: sign in with the service key)"
