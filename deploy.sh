#!/usr/bin/env bash
# Deploy hekaton. Run ./deploy.sh --help for the options and every prerequisite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  cat <<'EOF'
Usage:
  ./deploy.sh local [bin/dev options]     start the local stack (same as `bin/dev up --detach`)
  ./deploy.sh gcp --project P --region R --cluster C --cluster-location L --namespaces NS[,NS...]
                  [--firestore-location LOC] [--ingress-url URL] [--prometheus-url URL]
                  [--allowed-principals 'PATTERN,...'] [--invokers 'MEMBER,...']
                  [--log-dir DIR] [--dry-run]

`gcp` creates what is missing and leaves what exists (safe to re-run), then prints a summary:
APIs; the Firestore database, its composite indexes (firestore.indexes.json) and a TTL policy
expiring old ignored-message records; every topic, the dead-letter topic and its inbox
subscription; the Cloud Tasks queue hekaton-timers; one service account per role (step
functions, status/control APIs, scheduler, function builds) with least-privilege IAM; the Pub/Sub service agent's
rights for dead-lettering; every Cloud Function (2nd gen, deployed in parallel, private); the
scheduler tick; and in each model namespace a Kubernetes Role for exactly the Knative and Istio
kinds hekaton uses, bound to its service accounts. What is deployed comes from
functions/manifest.py.

Options:
  --project P              the GCP project (billing enabled)
  --region R               region of the functions, queue and scheduler job (e.g. europe-west1)
  --cluster C, --cluster-location L   the GKE cluster running Knative Serving and Istio
  --namespaces NS,...      the Kubernetes namespaces of the model services
  --firestore-location LOC Firestore location when the database is created (default: the region)
  --ingress-url URL        where revision URLs are reached (the Istio ingress address)
  --prometheus-url URL     the Prometheus API scraping Istio (without it: no metric analysis)
  --allowed-principals P   who may call the status/control APIs (patterns, e.g. '*@example.com')
  --invokers M,...         IAM members allowed to invoke them (e.g. 'group:ops@example.com')
  --log-dir DIR            where each function deployment's log is kept (default .hekaton/deploy)
  --dry-run                print every command and change nothing (no gcloud or kubectl call)

Prerequisites:
  - a GCP project with billing enabled (gcloud billing projects describe P)
  - gcloud (Google Cloud CLI), kubectl and python3 (3.11+) on PATH; `gcloud auth login` done
  - the caller's roles on the project: roles/owner, or all of roles/serviceusage.serviceUsageAdmin,
    roles/datastore.owner, roles/pubsub.admin, roles/cloudtasks.admin, roles/cloudscheduler.admin,
    roles/cloudfunctions.admin, roles/iam.serviceAccountAdmin, roles/iam.serviceAccountUser,
    roles/resourcemanager.projectIamAdmin, roles/secretmanager.admin, roles/container.admin
    (Kubernetes RBAC in the model namespaces)
  - the APIs are enabled by this script (it needs serviceusage rights for that)
  - a GKE cluster with Knative Serving and Istio installed, the model namespaces' Knative
    Services reachable through the Istio ingress (--ingress-url)
  - Artifact Registry notifications published on topic `gcr` (Artifact Registry does this by
    itself once a topic named gcr exists in the project; this script creates it)
  - optional: a Secret Manager secret `hekaton-webhook-url` holding a Slack-compatible webhook
    URL for transition notifications (the notify function does nothing without it)
EOF
}

say() { echo "deploy.sh: $*" >&2; }
die() { say "$*"; exit 2; }

[[ $# -ge 1 ]] || { usage >&2; exit 2; }
MODE="$1"; shift
case "$MODE" in
  -h|--help|help) usage; exit 0 ;;
  local) exec "$ROOT/bin/dev" up --detach "$@" ;;
  gcp) ;;
  *) usage >&2; die "unknown mode '$MODE' (expected local or gcp)" ;;
esac

PROJECT="" REGION="" CLUSTER="" CLUSTER_LOCATION="" NAMESPACES="" FIRESTORE_LOCATION=""
INGRESS_URL="" PROMETHEUS_URL="" ALLOWED_PRINCIPALS="" INVOKERS="" DRY_RUN=0
LOG_DIR="$ROOT/.hekaton/deploy"
RUNTIME="python311"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift; continue ;;
  esac
  [[ $# -ge 2 ]] || die "option $1 needs a value (see ./deploy.sh --help)"
  case "$1" in
    --project) PROJECT="$2" ;;
    --region) REGION="$2" ;;
    --cluster) CLUSTER="$2" ;;
    --cluster-location) CLUSTER_LOCATION="$2" ;;
    --namespaces) NAMESPACES="$2" ;;
    --firestore-location) FIRESTORE_LOCATION="$2" ;;
    --ingress-url) INGRESS_URL="$2" ;;
    --prometheus-url) PROMETHEUS_URL="$2" ;;
    --allowed-principals) ALLOWED_PRINCIPALS="$2" ;;
    --invokers) INVOKERS="$2" ;;
    --log-dir) LOG_DIR="$2" ;;
    *) die "unknown option $1 (see ./deploy.sh --help)" ;;
  esac
  shift 2
done
[[ -n "$PROJECT" ]] || die "--project is required (see ./deploy.sh --help)"
[[ -n "$REGION" ]] || die "--region is required"
[[ -n "$CLUSTER" && -n "$CLUSTER_LOCATION" ]] ||
  die "--cluster and --cluster-location (the GKE cluster running Knative and Istio) are required"
[[ -n "$NAMESPACES" ]] || die "--namespaces is required: the model namespaces hekaton may manage"
FIRESTORE_LOCATION="${FIRESTORE_LOCATION:-$REGION}"

PY="${PYTHON:-python3}"
[[ -x "$ROOT/.venv/bin/python" ]] && PY="$ROOT/.venv/bin/python"
for tool in "$PY" gcloud kubectl; do
  [[ $DRY_RUN -eq 1 && "$tool" != "$PY" ]] && continue
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH (see the prerequisites in ./deploy.sh --help)"
done

WORK="$(mktemp -d)"
if [[ $DRY_RUN -eq 1 ]]; then
  trap 'say "dry run: nothing was changed (RBAC manifests kept in $WORK)"' EXIT
else
  trap 'rm -rf "$WORK"' EXIT
fi

# --- running commands ------------------------------------------------------------------------

# A hint for a failed command, from what it printed.
hint_for() {
  local output="$1"
  case "$output" in
    *BILLING*|*billing*) echo "enable billing for $PROJECT: gcloud billing projects link $PROJECT --billing-account ID" ;;
    *PERMISSION_DENIED*|*"does not have"*|*403*) echo "your account lacks a role this step needs (the caller's roles are listed in ./deploy.sh --help)" ;;
    *SERVICE_DISABLED*|*"has not been used"*) echo "an API is still being enabled; wait a minute and re-run (re-running is safe)" ;;
    *"active account"*|*"gcloud auth login"*) echo "log in first: gcloud auth login" ;;
    *) echo "fix the cause above and re-run ./deploy.sh (what exists is left as it is)" ;;
  esac
}

fail() {
  local output="$1"; shift
  say "FAILED: $(printf '%q ' "$@")"
  [[ -n "$output" ]] && printf '%s\n' "$output" | tail -n 20 >&2
  say "hint: $(hint_for "$output")"
  exit 1
}

# run CMD...: print it (dry run) or run it, stopping with the command and a hint on failure.
run() {
  if [[ $DRY_RUN -eq 1 ]]; then printf '%q ' "$@"; printf '\n'; return 0; fi
  local output
  if ! output="$("$@" 2>&1)"; then fail "$output" "$@"; fi
  [[ -z "$output" ]] || printf '%s\n' "$output" >&2
}

# query CMD...: a read-only call whose output we need (never in a dry run).
query() {
  local output
  if ! output="$("$@" 2>"$WORK/query.err")"; then fail "$(cat "$WORK/query.err")" "$@"; fi
  printf '%s' "$output"
}

SUMMARY=()
note() { SUMMARY+=("$1|$2|$3"); }

# ensure KIND NAME DESCRIBE... -- CREATE... [-- UPDATE...]: create unless DESCRIBE succeeds; what
# exists is left alone, or given the manifest's settings again with UPDATE.
ensure() {
  local kind="$1" name="$2"; shift 2
  local describe=() create=()
  while [[ "$1" != "--" ]]; do describe+=("$1"); shift; done
  shift
  while [[ $# -gt 0 && "$1" != "--" ]]; do create+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift  # what is left is the UPDATE command
  if [[ $DRY_RUN -eq 0 ]] && "${describe[@]}" >/dev/null 2>&1; then
    if [[ $# -gt 0 ]]; then
      run "$@"
      note "$kind" "$name" "already existed (settings applied)"
    else
      note "$kind" "$name" "already existed"
    fi
    return 0
  fi
  run "${create[@]}"
  note "$kind" "$name" "$([[ $DRY_RUN -eq 1 ]] && echo "would create" || echo created)"
}

# grant KIND NAME MEMBER ROLE CMD...: an idempotent IAM binding (add-iam-policy-binding).
grant() {
  local kind="$1" name="$2" member="$3" role="$4"; shift 4
  local command=("$@" --member "$member" --role "$role" --quiet) attempt output
  if [[ $DRY_RUN -eq 1 ]]; then
    run "${command[@]}"
  else
    for attempt in 1 2 3 4 5 6; do
      output="$("${command[@]}" 2>&1)" && break
      # IAM sees a service account created a moment ago only after a few seconds.
      if [[ $attempt -lt 6 && "$output" == *"does not exist"* ]]; then sleep 5; continue; fi
      fail "$output" "${command[@]}"
    done
  fi
  note "IAM $kind" "$role on $name -> ${member#*:}" bound
}

# allow_invoke FUNCTION MEMBER: roles/run.invoker on one function (its own binding command).
allow_invoke() {
  run gcloud functions add-invoker-policy-binding "$1" --region "$REGION" --project "$PROJECT" --member "$2"
  note "IAM function" "roles/run.invoker on $1 -> ${2#*:}" bound
}

# --- the plan from the manifest ---------------------------------------------------------------

PLAN="$(cd "$ROOT" && "$PY" -m functions.manifest_shell plan "$PROJECT")"
records() { awk -F'\t' -v kind="$1" '$1 == kind' <<< "$PLAN"; }
TIMER_QUEUE="" TIMER_ACCOUNT="" DEAD_LETTER_TOPIC=""
read -r _ TIMER_QUEUE _ <<< "$(records queue)"
read -r _ _ DEAD_LETTER_TOPIC <<< "$(records inbox)"
TIMER_ACCOUNT="$(records tick | cut -f6)"
BUILD_ACCOUNT="$(records build | cut -f2)"
# The identities Eventarc pushes with: the accounts of the event functions.
mapfile -t TRIGGER_ACCOUNTS < <(records function | awk -F'\t' '$6 != "-" {print $12}' | sort -u)

if [[ -z "$PROMETHEUS_URL" ]]; then
  say "no --prometheus-url: metric analysis has no backend, so a service whose spec keeps analysis" \
    "on never passes a traffic step (give the Prometheus API that scrapes Istio)"
fi
if [[ $DRY_RUN -eq 1 ]]; then
  PROJECT_NUMBER="<number of $PROJECT>" KUBE_SERVER="https://<endpoint of $CLUSTER>" KUBE_CA="<cluster CA>"
else
  caller="$(gcloud config get-value account 2>/dev/null || true)"
  [[ -n "$caller" && "$caller" != "(unset)" ]] || die "no gcloud account: run gcloud auth login"
  PROJECT_NUMBER="$(query gcloud projects describe "$PROJECT" --format 'value(projectNumber)')"
fi
PUBSUB_AGENT="service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"

# --- APIs, Firestore --------------------------------------------------------------------------

mapfile -t APIS < <(records api | cut -f2)
run gcloud services enable "${APIS[@]}" --project "$PROJECT"
note APIs "${#APIS[@]} services" enabled
if [[ $DRY_RUN -eq 0 ]]; then
  KUBE_SERVER="https://$(query gcloud container clusters describe "$CLUSTER" --project "$PROJECT" --location "$CLUSTER_LOCATION" --format 'value(endpoint)')"
  KUBE_CA="$(query gcloud container clusters describe "$CLUSTER" --project "$PROJECT" --location "$CLUSTER_LOCATION" --format 'value(masterAuth.clusterCaCertificate)')"
fi

ensure "Firestore database" "(default)" \
  gcloud firestore databases describe --database "(default)" --project "$PROJECT" -- \
  gcloud firestore databases create --database "(default)" --location "$FIRESTORE_LOCATION" --type firestore-native --project "$PROJECT"

EXISTING_INDEXES=""
if [[ $DRY_RUN -eq 0 ]]; then
  EXISTING_INDEXES="$(query gcloud firestore indexes composite list --project "$PROJECT" --format json |
    (cd "$ROOT" && "$PY" -m functions.manifest_shell indexes))"
fi
while IFS=$'\t' read -r _ group fields; do
  if grep -qxF "$group"$'\t'"$fields" <<< "$EXISTING_INDEXES"; then
    note "Firestore index" "$group ($fields)" "already existed"
    continue
  fi
  read -r -a configs <<< "$fields"
  args=()
  for config in "${configs[@]}"; do args+=(--field-config "$config"); done
  run gcloud firestore indexes composite create --project "$PROJECT" --collection-group "$group" "${args[@]}" --async
  note "Firestore index" "$group ($fields)" "$([[ $DRY_RUN -eq 1 ]] && echo "would create" || echo created)"
done < <(records index)

while IFS=$'\t' read -r _ group field; do
  ttls=""
  if [[ $DRY_RUN -eq 0 ]]; then
    ttls="$(query gcloud firestore fields ttls list --collection-group "$group" --project "$PROJECT" --format 'value(name)')"
  fi
  if grep -q "/fields/$field\$" <<< "$ttls"; then
    note "Firestore TTL" "$group.$field" "already existed"
  else
    run gcloud firestore fields ttls update "$field" --collection-group "$group" --enable-ttl --project "$PROJECT" --async
    note "Firestore TTL" "$group.$field" "$([[ $DRY_RUN -eq 1 ]] && echo "would create" || echo created)"
  fi
done < <(records ttl)

# --- topics, dead letters, queue --------------------------------------------------------------

while IFS=$'\t' read -r _ topic; do
  ensure topic "$topic" gcloud pubsub topics describe "$topic" --project "$PROJECT" -- \
    gcloud pubsub topics create "$topic" --project "$PROJECT"
done < <(records topic)
while IFS=$'\t' read -r _ inbox topic; do
  ensure subscription "$inbox" gcloud pubsub subscriptions describe "$inbox" --project "$PROJECT" -- \
    gcloud pubsub subscriptions create "$inbox" --topic "$topic" --message-retention-duration 7d --project "$PROJECT"
  # Dead-lettering publishes as the Pub/Sub service agent.
  grant topic "$topic" "serviceAccount:$PUBSUB_AGENT" roles/pubsub.publisher \
    gcloud pubsub topics add-iam-policy-binding "$topic" --project "$PROJECT"
done < <(records inbox)
while IFS=$'\t' read -r _ queue attempts min_backoff max_backoff; do
  settings=(--location "$REGION" --project "$PROJECT"
    --max-attempts "$attempts" --min-backoff "$min_backoff" --max-backoff "$max_backoff")
  ensure "Cloud Tasks queue" "$queue" gcloud tasks queues describe "$queue" --location "$REGION" --project "$PROJECT" -- \
    gcloud tasks queues create "$queue" "${settings[@]}" -- gcloud tasks queues update "$queue" "${settings[@]}"
done < <(records queue)

# --- service accounts and their rights --------------------------------------------------------

# Every account first: one account's rights may name another (actAs the timer account).
while IFS=$'\t' read -r _ _ account_id email description _; do
  ensure "service account" "$account_id" gcloud iam service-accounts describe "$email" --project "$PROJECT" -- \
    gcloud iam service-accounts create "$account_id" --project "$PROJECT" --display-name "$description"
done < <(records account)
# (The kubernetes column is used by the RBAC step, through functions.manifest_shell rbac.)
while IFS=$'\t' read -r _ _ _ email _ project_roles topics _ timers; do
  member="serviceAccount:$email"
  if [[ "$project_roles" != "-" ]]; then
    IFS=, read -r -a roles <<< "$project_roles"
    for role in "${roles[@]}"; do
      grant project "$PROJECT" "$member" "$role" gcloud projects add-iam-policy-binding "$PROJECT" --condition None
    done
  fi
  if [[ "$topics" != "-" ]]; then
    IFS=, read -r -a publish_topics <<< "$topics"
    for topic in "${publish_topics[@]}"; do
      grant topic "$topic" "$member" roles/pubsub.publisher \
        gcloud pubsub topics add-iam-policy-binding "$topic" --project "$PROJECT"
    done
  fi
  if [[ "$timers" == 1 ]]; then
    grant queue "$TIMER_QUEUE" "$member" roles/cloudtasks.enqueuer \
      gcloud tasks queues add-iam-policy-binding "$TIMER_QUEUE" --location "$REGION" --project "$PROJECT"
    # A task carries an OAuth token of the timer account: creating one acts as that account.
    grant "service account" "$TIMER_ACCOUNT" "$member" roles/iam.serviceAccountUser \
      gcloud iam service-accounts add-iam-policy-binding "$TIMER_ACCOUNT" --project "$PROJECT"
  fi
done < <(records account)
# Eventarc's push subscriptions sign their OIDC tokens as the trigger account.
for trigger_account in "${TRIGGER_ACCOUNTS[@]}"; do
  grant "service account" "$trigger_account" "serviceAccount:$PUBSUB_AGENT" roles/iam.serviceAccountTokenCreator \
    gcloud iam service-accounts add-iam-policy-binding "$trigger_account" --project "$PROJECT"
done

# --- functions (in parallel) ------------------------------------------------------------------

REQUIREMENTS="$WORK/requirements.txt"
"$PY" - "$ROOT/pyproject.toml" > "$REQUIREMENTS" <<'PYEOF'
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))
PYEOF

if [[ -n "$PROMETHEUS_URL" ]]; then
  METRICS_ENV="HEKATON_METRICS_PROVIDER=prometheus|HEKATON_PROMETHEUS_URL=$PROMETHEUS_URL"
else
  METRICS_ENV="HEKATON_METRICS_PROVIDER=none"
fi
TIMERS_ENV="HEKATON_TIMERS=cloudtasks|HEKATON_TASKS_QUEUE=projects/$PROJECT/locations/$REGION/queues/$TIMER_QUEUE|HEKATON_TASKS_SERVICE_ACCOUNT=$TIMER_ACCOUNT"

# secret_ready SECRET MEMBER: whether the secret exists (granting MEMBER access to it); dry runs assume so.
secret_ready() {
  local secret="$1" member="$2"
  if [[ $DRY_RUN -eq 0 ]] && ! gcloud secrets describe "$secret" --project "$PROJECT" >/dev/null 2>&1; then
    return 1
  fi
  grant secret "$secret" "$member" roles/secretmanager.secretAccessor \
    gcloud secrets add-iam-policy-binding "$secret" --project "$PROJECT"
}

mkdir -p "$LOG_DIR"
PIDS=() NAMES=() COMMANDS=()
while IFS=$'\t' read -r _ name deployed source entry topic memory cpu timeout concurrency ingress account retry secrets; do
  dir="$WORK/src/$name"
  mkdir -p "$dir"
  cp -r "$ROOT/events" "$ROOT/shared" "$ROOT/functions" "$dir/"
  find "$dir" -name __pycache__ -prune -exec rm -rf {} +
  cp "$REQUIREMENTS" "$dir/"
  module="$(basename "$source" .py)"
  printf 'from functions.%s import %s  # noqa: F401\n' "$module" "$entry" > "$dir/main.py"
  # '^|^' makes '|' the separator: the principal patterns are a comma-separated list.
  # HEKATON_MODEL_TOKEN=google: validation, golden-set and top-up requests carry a Google ID token
  # of the function's account, so a model's `auth:` section can admit hekaton (register checks).
  env="^|^HEKATON_PROJECT=$PROJECT|HEKATON_LOG_FORMAT=json|HEKATON_MODEL_TOKEN=google|HEKATON_KUBE_SERVER=$KUBE_SERVER|HEKATON_KUBE_CA_DATA=$KUBE_CA|$METRICS_ENV|$TIMERS_ENV${INGRESS_URL:+|HEKATON_INGRESS_URL=$INGRESS_URL}"
  cmd=(gcloud functions deploy "$deployed" --gen2 --project "$PROJECT" --region "$REGION"
    --runtime "$RUNTIME" --source "$dir" --entry-point "$entry" --service-account "$account"
    --memory "$memory" --cpu "$cpu" --timeout "$timeout" --concurrency "$concurrency"
    --ingress-settings "$ingress" --no-allow-unauthenticated
    --build-service-account "projects/$PROJECT/serviceAccounts/$BUILD_ACCOUNT")
  if [[ "$topic" == "-" ]]; then
    # The APIs accept Google ID tokens whose audience is the function's URL.
    env+="|HEKATON_AUTH_AUDIENCES=https://$REGION-$PROJECT.cloudfunctions.net/$deployed,32555940559.apps.googleusercontent.com|HEKATON_ALLOWED_PRINCIPALS=$ALLOWED_PRINCIPALS"
    cmd+=(--trigger-http)
  else
    cmd+=(--trigger-topic "$topic" --trigger-service-account "$account")
    [[ "$retry" == 1 ]] && cmd+=(--retry)
  fi
  cmd+=(--set-env-vars "$env")
  if [[ "$secrets" != "-" ]]; then
    mounted=()
    IFS=, read -r -a pairs <<< "$secrets"
    for pair in "${pairs[@]}"; do
      secret="${pair#*=}"; secret="${secret%%:*}"
      if secret_ready "$secret" "serviceAccount:$account"; then
        mounted+=("$pair")
      else
        say "secret $secret does not exist: $deployed deploys without ${pair%%=*}" \
          "(create it: printf %s URL | gcloud secrets create $secret --data-file=- --project $PROJECT)"
        note secret "$secret" "missing (skipped)"
      fi
    done
    if ((${#mounted[@]})); then
      cmd+=(--set-secrets "$(IFS=,; echo "${mounted[*]}")")
    fi
  fi
  if [[ $DRY_RUN -eq 1 ]]; then
    run "${cmd[@]}"
    note function "$deployed" "would deploy"
    continue
  fi
  ("${cmd[@]}" > "$LOG_DIR/$name.log" 2>&1) &
  PIDS+=("$!") NAMES+=("$name") COMMANDS+=("$(printf '%q ' "${cmd[@]}")")
done < <(records function)

FAILED=0
for i in "${!PIDS[@]}"; do
  if wait "${PIDS[$i]}"; then
    note function "hekaton-${NAMES[$i]}" deployed
  else
    FAILED=1
    say "FAILED: ${COMMANDS[$i]}"
    tail -n 20 "$LOG_DIR/${NAMES[$i]}.log" >&2
    say "hint: $(hint_for "$(cat "$LOG_DIR/${NAMES[$i]}.log")") (full log: $LOG_DIR/${NAMES[$i]}.log)"
  fi
done
[[ $FAILED -eq 0 ]] || exit 1
[[ $DRY_RUN -eq 1 ]] || say "function logs kept in $LOG_DIR"

# --- triggers: invokers, retry and dead-lettering ---------------------------------------------

read -r _ MAX_ATTEMPTS MIN_BACKOFF MAX_BACKOFF <<< "$(records delivery)"
while IFS=$'\t' read -r _ name deployed _ _ topic _ _ _ _ _ account _ _; do
  if [[ "$topic" == "-" ]]; then
    if [[ -n "$INVOKERS" ]]; then
      IFS=, read -r -a members <<< "$INVOKERS"
      for member in "${members[@]}"; do
        allow_invoke "$deployed" "$member"
      done
    fi
    continue
  fi
  # Eventarc pushes with the trigger account's token; only it may invoke an event function.
  allow_invoke "$deployed" "serviceAccount:$account"
  if [[ $DRY_RUN -eq 1 ]]; then
    subscription="projects/$PROJECT/subscriptions/eventarc-$REGION-$deployed-sub"
  else
    trigger="$(query gcloud functions describe "$deployed" --gen2 --region "$REGION" --project "$PROJECT" --format 'value(eventTrigger.trigger)')"
    subscription="$(query gcloud eventarc triggers describe "$trigger" --location "$REGION" --project "$PROJECT" --format 'value(transport.pubsub.subscription)')"
  fi
  if [[ "$topic" == "$DEAD_LETTER_TOPIC" ]]; then
    note subscription "${subscription##*/}" "retries only (it reads the dead-letter topic)"
    continue
  fi
  run gcloud pubsub subscriptions update "$subscription" --project "$PROJECT" \
    --dead-letter-topic "projects/$PROJECT/topics/$DEAD_LETTER_TOPIC" --max-delivery-attempts "$MAX_ATTEMPTS" \
    --min-retry-delay "$MIN_BACKOFF" --max-retry-delay "$MAX_BACKOFF"
  note subscription "${subscription##*/}" "dead-letter after $MAX_ATTEMPTS"
  # Dead-lettering acknowledges on the source subscription as the Pub/Sub service agent.
  grant subscription "${subscription##*/}" "serviceAccount:$PUBSUB_AGENT" roles/pubsub.subscriber \
    gcloud pubsub subscriptions add-iam-policy-binding "$subscription" --project "$PROJECT"
done < <(records function)
[[ -n "$INVOKERS" ]] || say "no --invokers: nobody may call hekaton-status/hekaton-control yet" \
  "(gcloud functions add-invoker-policy-binding hekaton-status --region $REGION --member user:YOU)"

# --- the scheduler tick -----------------------------------------------------------------------

while IFS=$'\t' read -r _ job schedule topic body account; do
  data="$(printf '%s' "$body" | base64 | tr -d '\n')"
  settings=(--location "$REGION" --project "$PROJECT" --schedule "$schedule" --http-method POST
    --uri "https://pubsub.googleapis.com/v1/projects/$PROJECT/topics/$topic:publish"
    --message-body "{\"messages\":[{\"data\":\"$data\"}]}"
    --oauth-service-account-email "$account" --oauth-token-scope https://www.googleapis.com/auth/pubsub)
  ensure "scheduler job" "$job" gcloud scheduler jobs describe "$job" --location "$REGION" --project "$PROJECT" -- \
    gcloud scheduler jobs create http "$job" "${settings[@]}" --headers Content-Type=application/json -- \
    gcloud scheduler jobs update http "$job" "${settings[@]}" --update-headers Content-Type=application/json
done < <(records tick)

# --- Kubernetes RBAC in each model namespace --------------------------------------------------

KUBECONFIG_FILE="$WORK/kubeconfig"
if [[ $DRY_RUN -eq 0 ]]; then
  # A private kubeconfig: the caller's own contexts stay as they were.
  KUBECONFIG="$KUBECONFIG_FILE" query gcloud container clusters get-credentials "$CLUSTER" \
    --location "$CLUSTER_LOCATION" --project "$PROJECT" >/dev/null
fi
IFS=, read -r -a model_namespaces <<< "$NAMESPACES"
for namespace in "${model_namespaces[@]}"; do
  ensure namespace "$namespace" kubectl get namespace "$namespace" --kubeconfig "$KUBECONFIG_FILE" -- \
    kubectl create namespace "$namespace" --kubeconfig "$KUBECONFIG_FILE"
  manifest="$WORK/rbac-$namespace.yaml"
  (cd "$ROOT" && "$PY" -m functions.manifest_shell rbac "$PROJECT" "$namespace") > "$manifest"
  if [[ $DRY_RUN -eq 1 ]]; then
    run kubectl apply -f "$manifest" --kubeconfig "$KUBECONFIG_FILE"
    note "Role+RoleBinding" "$namespace/hekaton" "would apply"
    continue
  fi
  applied="$(query kubectl apply -f "$manifest" --kubeconfig "$KUBECONFIG_FILE")"
  while read -r object outcome; do
    [[ -n "$object" ]] || continue
    case "$outcome" in
      created) note "${object%%.*}" "$namespace/${object##*/}" created ;;
      unchanged) note "${object%%.*}" "$namespace/${object##*/}" "already existed" ;;
      *) note "${object%%.*}" "$namespace/${object##*/}" "updated ($outcome)" ;;
    esac
  done <<< "$applied"
done

# --- summary ----------------------------------------------------------------------------------

{
  printf '%-22s %-70s %s\n' WHAT NAME RESULT
  for row in "${SUMMARY[@]}"; do
    IFS='|' read -r kind name outcome <<< "$row"
    printf '%-22s %-70s %s\n' "$kind" "$name" "$outcome"
  done
} >&2
if [[ $DRY_RUN -eq 1 ]]; then
  say "dry run complete: the commands above are what a run against an empty project would do"
else
  say "hekaton deployed to $PROJECT ($REGION); status API: https://$REGION-$PROJECT.cloudfunctions.net/hekaton-status"
fi
