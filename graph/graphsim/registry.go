package graphsim

import (
	"crypto/sha256"
	"crypto/x509"
	"strings"
	"time"
)

// directory is what Entra ID and Intune know: tenants, app registrations,
// users and the devices that do not exist. Guarded by Server.mu.
type directory struct {
	tenants map[string]bool
	apps    map[string]*app
	users   map[string]*user     // by lower-case UPN
	missing map[string]bool      // device IDs that answer 404
	apis    map[string]*apiState // by lower-case app ID
	// principals are the service principals' object IDs, by tenant/app.
	principals map[string]string
}

// app is one app registration and the credentials it accepts.
type app struct {
	secret    string
	certs     map[[sha256.Size]byte]*x509.Certificate
	federated map[string]bool
}

// user is one work account that can sign in with the device code grant.
type user struct {
	upn      string
	objectID string
	password string
	// signInsValidAfter invalidates the refresh tokens issued before it, as
	// revoking a user's sessions does.
	signInsValidAfter time.Time
}

func newDirectory() directory {
	return directory{
		tenants: map[string]bool{},
		apps:    map[string]*app{},
		users:   map[string]*user{},
		missing: map[string]bool{},
		apis:    map[string]*apiState{},

		principals: map[string]string{},
	}
}

// appLocked returns the registration of clientID, creating an empty one.
func (d *directory) appLocked(clientID string) *app {
	id := strings.ToLower(clientID)
	a := d.apps[id]
	if a == nil {
		a = &app{certs: map[[sha256.Size]byte]*x509.Certificate{}, federated: map[string]bool{}}
		d.apps[id] = a
	}
	return a
}

// AddTenant registers a tenant. Tokens are issued, and Graph calls counted,
// only for registered tenants; the authority answers AADSTS90002 for others.
func (s *Server) AddTenant(tenantID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dir.tenants[strings.ToLower(tenantID)] = true
}

// AddApp registers an app that authenticates with a client secret, in every
// registered tenant (a multi-tenant app consented everywhere). Calling it
// again replaces the secret, which is how a test repairs a broken one; an
// empty secret removes it. The app's other credentials are kept.
func (s *Server) AddApp(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dir.appLocked(clientID).secret = secret
}

// AddAppCertificate lets an app authenticate with client assertions signed by
// cert's private key (RSA, PS256 as MSAL signs them, or RS256). The assertion
// must name the app in iss and sub, the tenant's token endpoint in aud, and
// be within its nbf and exp. The app is registered if it was not.
func (s *Server) AddAppCertificate(clientID string, cert *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dir.appLocked(clientID).certs[sha256.Sum256(cert.Raw)] = cert
}

// AddFederatedToken lets an app authenticate with exactly this client
// assertion, as a workload identity federation does with a projected service
// account token. The app is registered if it was not.
func (s *Server) AddFederatedToken(clientID, assertion string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dir.appLocked(clientID).federated[assertion] = true
}

// AddUser registers a work account that can approve device codes and so
// hold delegated tokens, and returns its object ID. The account exists in
// every registered tenant. Calling it again for the same UPN changes the
// password and keeps the object ID and sessions. The password
// is what the --dev sign-in page asks for; ApproveDeviceCode does not need
// it.
func (s *Server) AddUser(upn, password string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(upn)
	u := s.dir.users[key]
	if u == nil {
		u = &user{upn: upn, objectID: newGUID()}
		s.dir.users[key] = u
	}
	u.password = password
	return u.objectID
}

// SetDeviceMissing makes recoverPasscode on deviceID answer 404
// ResourceNotFound in every tenant and path form. By default every device
// whose ID is a well-formed GUID exists.
func (s *Server) SetDeviceMissing(deviceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dir.missing[strings.ToLower(deviceID)] = true
}

// SetDevicePresent undoes SetDeviceMissing: the device exists again, as
// after an operator fixed whatever made its jobs fail.
func (s *Server) SetDevicePresent(deviceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.dir.missing, strings.ToLower(deviceID))
}
