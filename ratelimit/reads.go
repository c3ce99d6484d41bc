package ratelimit

import "time"

// DefaultReadRate is Intune's limit for reads of managed devices: 2,000
// requests per 20 seconds per app per tenant. Reads (resolving a device
// named by its Entra ID device id or serial number, following what a
// device did with an action) have this budget of their own and never touch
// the 200 POSTs of DefaultRate.
var DefaultReadRate = Rate{N: 2000, Per: 20 * time.Second}

// readsSuffix marks the App of a Limiter that paces reads.
const readsSuffix = "-reads"

// ReadsApp is the App under which a Limiter paces the reads of app: its
// window log, pause and learned budget are keys of their own in the same
// bucket ("window.<app>-reads.<tenant>"), so a fleet's reads and its POSTs
// are counted, paused and learned apart, as Intune counts them.
func ReadsApp(app string) string { return app + readsSuffix }
