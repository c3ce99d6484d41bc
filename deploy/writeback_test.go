package deploy

import "github.com/recoverpasscode/recoverpasscode/writeback"

// deliveryMetrics is every metric the write-back exports (in the process
// that runs it, the gateway); writeback tests that the list is complete.
var deliveryMetrics = setOf(writeback.MetricNames...)
