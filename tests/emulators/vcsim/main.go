// Command vcsim runs govmomi's vCenter simulator (model VPX) for talprov's tests.
//
// Debian's golang-github-vmware-govmomi-dev ships the simulator packages but not
// govmomi's vcsim command, so this is the small part of it talprov needs: listen
// on an address and port (0 = any free port), accept exactly one user and
// password, serve HTTPS with a fresh ECDSA certificate for 127.0.0.1 (written to
// -cert so clients can verify it), and print one line with the SDK URL once it
// accepts connections. vapi/simulator adds /rest and the content library.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator"
)

func certificate(host, certPath string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	template := x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
	}
	if ip := net.ParseIP(host); ip != nil {
		template.IPAddresses = []net.IP{ip}
	} else {
		template.DNSNames = append(template.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if certPath != "" {
		block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		if err := os.WriteFile(certPath, block, 0o644); err != nil {
			return tls.Certificate{}, err
		}
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// parseDelays reads "CloneVM_Task=1000,PowerOnVM_Task=500" (empty: no delays).
func parseDelays(text string) (map[string]int, error) {
	delays := map[string]int{}
	for _, item := range strings.Split(text, ",") {
		if item == "" {
			continue
		}
		name, ms, found := strings.Cut(item, "=")
		value, err := strconv.Atoi(ms)
		if !found || err != nil || value < 0 {
			return nil, fmt.Errorf("%q is not METHOD=MS", item)
		}
		delays[name] = value
	}
	return delays, nil
}

func main() {
	host := flag.String("listen", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on (0: any free port)")
	username := flag.String("username", "user", "the one user name accepted at login")
	password := flag.String("password", "pass", "the one password accepted at login")
	certPath := flag.String("cert", "", "write the server certificate (PEM) to this file")
	methodDelay := flag.String("method-delay", "",
		"METHOD=MS,...: milliseconds a call of METHOD takes (the simulator runs tasks inside the call)")
	flag.Parse()
	delays, err := parseDelays(*methodDelay)
	if err != nil {
		log.Fatalf("-method-delay: %v", err)
	}

	model := simulator.VPX()
	if err := model.Create(); err != nil {
		log.Fatalf("create model: %v", err)
	}
	defer model.Remove()
	model.DelayConfig.MethodDelay = delays

	cert, err := certificate(*host, *certPath)
	if err != nil {
		log.Fatalf("certificate: %v", err)
	}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	model.Service.RegisterEndpoints = true
	model.Service.Listen = &url.URL{
		Host: net.JoinHostPort(*host, fmt.Sprint(*port)),
		User: url.UserPassword(*username, *password),
	}
	server := model.Service.NewServer()
	defer server.Close()

	sdk := *server.URL
	sdk.User = nil
	fmt.Printf("vcsim listening on %s\n", sdk.String())
	os.Stdout.Sync()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
