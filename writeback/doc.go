// Package writeback delivers every result of a source back to where its
// jobs came from: to the source's webhooks, signed per the Standard
// Webhooks specification, as a work note on its ServiceNow record, and as
// a comment on its Jira Service Management issue.
//
// # Configuration
//
// The endpoints come from the configuration only (the webhooks, servicenow
// and jira keys of a source in GATEWAY_CONFIG), never from a job: a job
// cannot make the service call an address of its choosing. Source is the
// YAML shape of one source's write-back:
//
//	sources:
//	  ticketing:
//	    webhooks:
//	      - url: https://hooks.example.com/recoverpasscode
//	        secret: whsec_<base64>            # or secretFile: /run/secrets/hook
//	        previousSecret: whsec_<base64>    # while rotating: both sign
//	        name: hooks                       # optional, see Webhook.Name
//	    servicenow:
//	      instance: https://example.service-now.com
//	      table: incident                     # the default
//	      user: svc-recoverpasscode           # basic auth, or
//	      passwordFile: /run/secrets/snow     #   password: …
//	      # clientId: …, clientSecret(File): …, tokenUrl: …  (OAuth client credentials)
//	    jira:
//	      site: https://example.atlassian.net
//	      email: svc-recoverpasscode@example.com
//	      apiTokenFile: /run/secrets/jira     # or apiToken: …; or bearer(File): …
//	      public: false                       # the default: an internal note
//
// Endpoint URLs are https, or http to a loopback address. Config.Validate
// reports every mistake with the source and field to fix, and reads the
// secret files so that a missing one is found at start.
//
// # Delivery
//
// Each endpoint has a durable pull consumer on the results stream named
// writeback_<source>_<endpoint>, filtered to <prefix>.results.<source>.>,
// and its own goroutines and HTTP connections, so an endpoint that is down
// or slow holds up no other. Processes running a Deliverer with the same
// configuration share each consumer, and a restart resumes where the
// consumer stands. A result is acknowledged only after the endpoint's 2xx
// (at least once: a result may arrive twice, always with the same
// webhook-id, <jobId>/result); otherwise it is handed back to JetStream
// with a delay that doubles from Config.MinBackoff to MaxBackoff with
// jitter (a longer Retry-After is honoured), for Config.RetryFor (24 h)
// after it was stored. A 410 Gone disables the endpoint (in every
// process) until a delivery of it is redelivered; another 3xx or 4xx (but
// 408, 425, 429) ends the delivery once the result has had
// Config.ClientErrorAttempts attempts. A ServiceNow work note takes two
// requests, a lookup and a write: one retried after its write timed out
// may be written twice.
//
// A delivery that ends without a 2xx is kept as a Failure, with its
// outcome, the last status, an excerpt of the last answer (never holding
// a configured secret) and the attempts, in the deliveries bucket
// (<prefix>_deliveries, created by the workers) under
// failed.<source>.<endpoint>.<jobId>; a disabled endpoint is kept under
// endpoint.<source>.<endpoint>. Store lists them and Redeliver asks for a
// new round of delivery, which each endpoint's second durable consumer
// (writeback_<source>_<endpoint> on the bucket's stream) picks up; this
// is what `enqueue deliveries list|redeliver` runs.
//
// # Tickets
//
// ServiceNow: the record of the configured table whose number is the
// result's ticket is looked up (GET /api/now/table/{table}?sysparm_query=
// number=<ticket>&sysparm_limit=2&sysparm_fields=sys_id,number; a ticket
// is letters, digits, '-' and '_' only, so no encoded-query operator can
// change the query) and, if exactly one is found, a work note is added
// (PATCH /api/now/table/{table}/{sys_id} with work_notes). Jira: a
// comment in Atlassian Document Format is added to the issue whose key is
// the ticket (POST /rest/api/3/issue/{key}/comment; a key is
// [A-Z][A-Z0-9_]+-[0-9]+). No ticket, an invalid one, no record or issue,
// or more than one record: a failed delivery saying so, never a guess.
// The note says what happened on which device, who asked and when,
// Graph's status and request-id, and the job (see Note).
//
// # NATS permissions
//
// NATSPermissions lists what the Deliverer's NATS user needs, with the
// default prefix and NATS_INBOX_PREFIX=_INBOX.gateway:
//
//	publish:
//	  $JS.API.STREAM.INFO.RECOVERPASSCODE_RESULTS
//	  $JS.API.CONSUMER.CREATE.RECOVERPASSCODE_RESULTS.*.recoverpasscode.results.>
//	  $JS.API.CONSUMER.INFO.RECOVERPASSCODE_RESULTS.*
//	  $JS.API.CONSUMER.MSG.NEXT.RECOVERPASSCODE_RESULTS.*
//	  $JS.ACK.RECOVERPASSCODE_RESULTS.>
//	  $JS.ACK.*.*.RECOVERPASSCODE_RESULTS.>
//	  $JS.API.STREAM.MSG.GET.RECOVERPASSCODE_RESULTS
//	  $JS.API.STREAM.INFO.RECOVERPASSCODE_CONFIRMATIONS
//	  $JS.API.CONSUMER.CREATE.RECOVERPASSCODE_CONFIRMATIONS.*.recoverpasscode.confirmations.>
//	  $JS.API.CONSUMER.INFO.RECOVERPASSCODE_CONFIRMATIONS.*
//	  $JS.API.CONSUMER.MSG.NEXT.RECOVERPASSCODE_CONFIRMATIONS.*
//	  $JS.API.STREAM.MSG.GET.RECOVERPASSCODE_CONFIRMATIONS
//	  $JS.ACK.RECOVERPASSCODE_CONFIRMATIONS.>
//	  $JS.ACK.*.*.RECOVERPASSCODE_CONFIRMATIONS.>
//	  $KV.recoverpasscode_deliveries.>
//	  $JS.API.STREAM.INFO.KV_recoverpasscode_deliveries
//	  $JS.API.DIRECT.GET.KV_recoverpasscode_deliveries.>
//	  $JS.API.CONSUMER.CREATE.KV_recoverpasscode_deliveries.*.$KV.recoverpasscode_deliveries.>
//	  $JS.API.CONSUMER.DELETE.KV_recoverpasscode_deliveries.*
//	  $JS.FC.KV_recoverpasscode_deliveries.>
//	  $JS.FC.*.*.KV_recoverpasscode_deliveries.>
//	  $JS.API.CONSUMER.MSG.NEXT.KV_recoverpasscode_deliveries.*
//	  $JS.ACK.KV_recoverpasscode_deliveries.>
//	  $JS.ACK.*.*.KV_recoverpasscode_deliveries.>
//	publish deny:
//	  recoverpasscode.results.>, recoverpasscode.dlq.>, recoverpasscode.audit.>,
//	  recoverpasscode.confirmations.>
//	subscribe:
//	  _INBOX.gateway.>
//
// The confirmations stream lines do the same for each endpoint's consumer
// of its source's confirmations of followed jobs (see confirmations.go),
// and read a confirmation again by its sequence (a redelivery).
// The results stream lines create, read, pull from and acknowledge the
// endpoints' consumers (their filter, in the create subject, limits them
// to results) and read a result again by its sequence (a redelivery, the
// oldest-undelivered metric). The bucket lines keep, list and resolve
// failures, record disabled endpoints, run the watchers behind
// Store.Failures and the endpoint state (ordered consumers, deleted when
// done, with flow control), and pull and acknowledge the redelivery
// consumers. It needs no right to create a stream or bucket, and none to
// publish a result. OperatorPermissions is the bucket's part of it, all
// that `enqueue deliveries list|redeliver` needs (with its own inbox
// prefix). A test runs both as users holding exactly these permissions.
//
// # Metrics
//
// MetricNames lists the delivery metrics: deliveries by source, endpoint
// and outcome; attempts by what they got; latency from result to 2xx;
// the oldest undelivered result and the failures kept per endpoint
// (sampled every Config.SampleInterval); and whether it is disabled.
package writeback
