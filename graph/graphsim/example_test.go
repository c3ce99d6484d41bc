package graphsim_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/recoverpasscode/recoverpasscode/graph/graphsim"
)

// Example shows the whole round trip a Graph client makes: an app-only token
// from the simulated Entra ID through real MSAL, then recoverPasscode.
func Example() {
	s := graphsim.New(graphsim.Config{})
	defer s.Close()
	const tenant, client, secret = "7f3b2c1a-4d5e-4f60-8a9b-0c1d2e3f4a5b", "11111111-2222-4333-8444-555555555555", "s3cret"
	s.AddTenant(tenant)
	s.AddApp(client, secret)

	cred, _ := confidential.NewCredFromSecret(secret)
	app, _ := confidential.New(s.AuthorityHost()+"/"+tenant, client, cred,
		confidential.WithInstanceDiscovery(false), // a custom authority host
		confidential.WithHTTPClient(s.Client()))   // trusts the simulator's CA
	tok, err := app.AcquireTokenByCredential(context.Background(), []string{"https://graph.microsoft.com/.default"})
	if err != nil {
		fmt.Println(err)
		return
	}

	const device = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	req, _ := http.NewRequest(http.MethodPost, s.GraphURL()+"/deviceManagement/managedDevices/"+device+"/recoverPasscode", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := s.Client().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, s.Performed(device))
	// Output: 204 1
}
