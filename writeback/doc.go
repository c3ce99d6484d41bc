// Package writeback delivers every result of a source back to where its
// jobs came from: signed webhooks (Standard Webhooks), ServiceNow work
// notes and Jira Service Management comments.
package writeback
