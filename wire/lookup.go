package wire

import (
	"fmt"
	"net/url"
	"strings"
)

// The job fields that name a device by something other than its Intune id,
// as event sources (Defender alerts, compliance pipelines, Entra ID) know
// it. They are also the managedDevice properties Graph filters on.
const (
	// FieldAzureADDeviceID is the device's Entra ID device id, a GUID.
	FieldAzureADDeviceID = "azureADDeviceId"
	// FieldSerialNumber is the device's hardware serial number.
	FieldSerialNumber = "serialNumber"
)

// maxSerialNumber bounds a serial number; real ones are a few dozen
// characters at most (VMware's, with spaces, are the longest seen).
const maxSerialNumber = 128

// Lookup names a device by one of its properties, to be resolved to its
// Intune managed device id with one Graph read before anything is done to
// it. It is a plain value, safe to copy and share.
type Lookup struct {
	// Field is FieldAzureADDeviceID or FieldSerialNumber.
	Field string
	// Value is what the job named.
	Value string
}

// Lookup reports the device property j names instead of managedDeviceId,
// if it names one. It does not validate: with more than one set it returns
// the first of azureADDeviceId, serialNumber.
func (j *Job) Lookup() (Lookup, bool) {
	switch {
	case j.AzureADDeviceID != "":
		return Lookup{Field: FieldAzureADDeviceID, Value: j.AzureADDeviceID}, true
	case j.SerialNumber != "":
		return Lookup{Field: FieldSerialNumber, Value: j.SerialNumber}, true
	}
	return Lookup{}, false
}

// Validate checks the value: an azureADDeviceId is a GUID; a serialNumber
// is 1 to 128 characters of letters, digits, space and - _ . / : with no
// leading or trailing space. Neither admits a quote, a parenthesis or
// anything else that means something in an OData filter, and Query escapes
// the value too, so no input can change the query.
func (l Lookup) Validate() error {
	switch l.Field {
	case FieldAzureADDeviceID:
		if !IsGUID(l.Value) {
			return fieldError(l.Field, l.Value, "must be a GUID (the device's Entra ID device id)")
		}
		return nil
	case FieldSerialNumber:
		if reason := serialProblem(l.Value); reason != "" {
			return fieldError(l.Field, l.Value, reason)
		}
		return nil
	}
	return fieldError("lookup", l.Field, "is not a device property this service resolves")
}

func serialProblem(s string) string {
	if s == "" || len(s) > maxSerialNumber {
		return fmt.Sprintf("must be 1 to %d characters", maxSerialNumber)
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return "must not start or end with a space"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && !strings.ContainsRune(" -_./:", rune(c)) {
			return "may hold only letters, digits, spaces and - _ . / :"
		}
	}
	return ""
}

// Filter is the OData filter that selects the device: `field eq 'value'`,
// the value written as an OData string literal (a quote doubled). It
// validates first.
func (l Lookup) Filter() (string, error) {
	if err := l.Validate(); err != nil {
		return "", err
	}
	return l.Field + " eq '" + strings.ReplaceAll(l.Value, "'", "''") + "'", nil
}

// Query is the escaped query string of the one read that resolves the
// device, relative to GET {graph}/deviceManagement/managedDevices:
// "$filter=<Filter, escaped>&$select=id". It validates first.
func (l Lookup) Query() (string, error) {
	f, err := l.Filter()
	if err != nil {
		return "", err
	}
	// %20 rather than '+' for a space: both mean a space in a query, but
	// Graph documents %20.
	return "$filter=" + strings.ReplaceAll(url.QueryEscape(f), "+", "%20") + "&$select=id", nil
}
