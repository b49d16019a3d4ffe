#!/usr/bin/env bash
# Deploy hekaton.
#   ./deploy.sh local                                  bring the local stack up (same as `bin/dev up --detach`)
#   ./deploy.sh gcp --project P --region R --cluster C --cluster-location L [--ingress-url URL]
#                   [--prometheus-url URL] [--allowed-principals 'PATTERN,...'] [--dry-run]
#                                                      deploy to a GCP project (topics with dead-lettering,
#                                                      one Cloud Function per step, scheduler tick, IAM,
#                                                      Firestore index); --dry-run prints every command.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

[[ $# -ge 1 ]] || usage
MODE="$1"; shift
case "$MODE" in
  local) exec "$ROOT/bin/dev" up --detach "$@" ;;
  gcp) ;;
  *) usage ;;
esac

PROJECT="" REGION="" INGRESS_URL="" PROMETHEUS_URL="" ALLOWED_PRINCIPALS="" CLUSTER="" CLUSTER_LOCATION="" DRY_RUN=0 RUNTIME="python311" SA_NAME="hekaton"
TICK_SCHEDULE="* * * * *" MAX_DELIVERY_ATTEMPTS=5
while [[ $# -gt 0 ]]; do
  case "$1" in
    --project) PROJECT="$2"; shift 2 ;;
    --region) REGION="$2"; shift 2 ;;
    --cluster) CLUSTER="$2"; shift 2 ;;
    --ingress-url) INGRESS_URL="$2"; shift 2 ;;
    --prometheus-url) PROMETHEUS_URL="$2"; shift 2 ;;
    --allowed-principals) ALLOWED_PRINCIPALS="$2"; shift 2 ;;
    --cluster-location) CLUSTER_LOCATION="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) echo "deploy.sh: unknown option $1" >&2; usage ;;
  esac
done
[[ -n "$PROJECT" ]] || { echo "deploy.sh: --project is required" >&2; exit 2; }
[[ -n "$REGION" ]] || { echo "deploy.sh: --region is required" >&2; exit 2; }
[[ -n "$CLUSTER" && -n "$CLUSTER_LOCATION" ]] || { echo "deploy.sh: --cluster and --cluster-location (the GKE cluster running Knative) are required" >&2; exit 2; }
SA="${SA_NAME}@${PROJECT}.iam.gserviceaccount.com"
if [[ -n "$PROMETHEUS_URL" ]]; then
  METRICS_ENV="HEKATON_METRICS_PROVIDER=prometheus|HEKATON_PROMETHEUS_URL=$PROMETHEUS_URL"
else
  METRICS_ENV="HEKATON_METRICS_PROVIDER=none"
  echo "deploy.sh: no --prometheus-url: metric analysis has no backend, so a service whose spec" \
    "keeps analysis on never passes a traffic step (give the Prometheus API that scrapes Istio)" >&2
fi
if [[ $DRY_RUN -eq 1 ]]; then
  KUBE_SERVER="https://<endpoint of $CLUSTER>" KUBE_CA="<cluster CA>"
else
  KUBE_SERVER="https://$(gcloud container clusters describe "$CLUSTER" --project "$PROJECT" --location "$CLUSTER_LOCATION" --format 'value(endpoint)')"
  KUBE_CA="$(gcloud container clusters describe "$CLUSTER" --project "$PROJECT" --location "$CLUSTER_LOCATION" --format 'value(masterAuth.clusterCaCertificate)')"
fi

run() {
  if [[ $DRY_RUN -eq 1 ]]; then printf '%q ' "$@"; printf '\n'; else "$@"; fi
}
# Create-if-missing: describe first so re-running the script is safe.
ensure() {
  local describe="$1"; shift
  if [[ $DRY_RUN -eq 0 ]] && eval "$describe" >/dev/null 2>&1; then return 0; fi
  run "$@"
}

PY="${PYTHON:-python3}"
[[ -x "$ROOT/.venv/bin/python" ]] && PY="$ROOT/.venv/bin/python"
# name<TAB>source<TAB>entry point<TAB>trigger topic ("-" for HTTP), from the one manifest the local stack uses too.
MANIFEST="$(cd "$ROOT" && "$PY" -c '
from functions.manifest import FUNCTIONS, topics
for f in FUNCTIONS:
    print("F", f.name, f.source, f.entry_point, f.trigger_topic or "-", sep="\t")
for t in topics():
    print("T", t, sep="\t")
')"

run gcloud services enable --project "$PROJECT" cloudfunctions.googleapis.com run.googleapis.com \
  eventarc.googleapis.com pubsub.googleapis.com firestore.googleapis.com cloudscheduler.googleapis.com \
  artifactregistry.googleapis.com cloudbuild.googleapis.com container.googleapis.com

# Service account the functions run as: read/write Firestore, publish steps, drive Knative on GKE.
ensure "gcloud iam service-accounts describe $SA --project $PROJECT" \
  gcloud iam service-accounts create "$SA_NAME" --project "$PROJECT" --display-name "hekaton functions"
for role in roles/datastore.user roles/pubsub.publisher roles/container.developer roles/run.invoker roles/eventarc.eventReceiver; do
  run gcloud projects add-iam-policy-binding "$PROJECT" --member "serviceAccount:$SA" --role "$role" --condition None --quiet
done

while IFS=$'\t' read -r kind topic _; do
  [[ "$kind" == "T" ]] || continue
  ensure "gcloud pubsub topics describe $topic --project $PROJECT" gcloud pubsub topics create "$topic" --project "$PROJECT"
done <<< "$MANIFEST"

run gcloud firestore indexes composite create --project "$PROJECT" --collection-group rollouts \
  --field-config field-path=service,order=ascending --field-config field-path=created_at,order=descending --quiet

# Stage one source folder per function: its module as main.py's import, plus events/ and shared/ only.
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
"$PY" - "$ROOT/pyproject.toml" > "$STAGE/requirements.txt" <<'PYEOF'
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))
PYEOF

while IFS=$'\t' read -r kind name source entry topic; do
  [[ "$kind" == "F" ]] || continue
  dir="$STAGE/$name"
  mkdir -p "$dir/functions"
  cp -r "$ROOT/events" "$ROOT/shared" "$dir/"
  # manifest.py: the dead-letter recorder finds a subscription's original topic in it.
  cp "$ROOT/functions/__init__.py" "$ROOT/functions/_runtime.py" "$ROOT/functions/_steps.py" "$ROOT/functions/_http.py" "$ROOT/functions/manifest.py" "$ROOT/$source" "$dir/functions/"
  cp "$STAGE/requirements.txt" "$dir/"
  module="$(basename "$source" .py)"
  printf 'from functions.%s import %s  # noqa: F401\n' "$module" "$entry" > "$dir/main.py"
  common=(gcloud functions deploy "hekaton-$name" --gen2 --project "$PROJECT" --region "$REGION"
    --runtime "$RUNTIME" --source "$dir" --entry-point "$entry" --service-account "$SA"
    # '^|^' makes '|' the separator: the principal patterns are a comma-separated list.
    # The APIs accept Google ID tokens whose audience is the function's URL.
    --set-env-vars "^|^HEKATON_PROJECT=$PROJECT|HEKATON_LOG_FORMAT=json|HEKATON_KUBE_SERVER=$KUBE_SERVER|HEKATON_KUBE_CA_DATA=$KUBE_CA${INGRESS_URL:+|HEKATON_INGRESS_URL=$INGRESS_URL}|HEKATON_AUTH_AUDIENCES=https://$REGION-$PROJECT.cloudfunctions.net/hekaton-$name,32555940559.apps.googleusercontent.com|HEKATON_ALLOWED_PRINCIPALS=$ALLOWED_PRINCIPALS|$METRICS_ENV" --memory 256Mi --timeout 120s)
  if [[ "$topic" == "-" ]]; then
    run "${common[@]}" --trigger-http --no-allow-unauthenticated
  else
    # --retry: a raised (retryable) error makes Pub/Sub redeliver; dead-lettering below bounds it.
    run "${common[@]}" --trigger-topic "$topic" --retry --trigger-service-account "$SA"
    # The dead-letter recorder's own subscription retries; it never dead-letters into itself.
    if [[ "$topic" == "hekaton-dead-letter" ]]; then continue; fi
    if [[ $DRY_RUN -eq 1 ]]; then
      sub="<eventarc subscription of hekaton-$name>"
    else
      sub="$(gcloud eventarc triggers list --project "$PROJECT" --location "$REGION" \
        --filter "name~hekaton-$name" --format 'value(transport.pubsub.subscription)' | head -1)"
    fi
    run gcloud pubsub subscriptions update "$sub" --project "$PROJECT" \
      --dead-letter-topic hekaton-dead-letter --max-delivery-attempts "$MAX_DELIVERY_ATTEMPTS" \
      --min-retry-delay 10s --max-retry-delay 600s
  fi
done <<< "$MANIFEST"

ensure "gcloud scheduler jobs describe hekaton-tick --project $PROJECT --location $REGION" \
  gcloud scheduler jobs create pubsub hekaton-tick --project "$PROJECT" --location "$REGION" \
  --schedule "$TICK_SCHEDULE" --topic hekaton-tick --message-body '{"source":"cloud-scheduler"}'

if [[ $DRY_RUN -eq 1 ]]; then echo "dry run: nothing was deployed"; else echo "hekaton deployed to $PROJECT ($REGION)."; fi
