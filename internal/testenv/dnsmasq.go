package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNSMasq is Debian's dnsmasq serving a hosts file and SRV records on 127.0.0.1, as
// the only authority for one domain (unknown names in it answer NXDOMAIN; nothing is
// forwarded anywhere).
type DNSMasq struct {
	// Address is 127.0.0.1:PORT, UDP and TCP; it stays the same across Restart.
	Address string
	// Domain is the domain it answers for, e.g. "test".
	Domain string

	t     testing.TB
	bin   string
	dir   string
	ttl   int
	proc  *Process
	loads int // "read HOSTS" lines seen so far
}

// SRV is one SRV record dnsmasq serves (--srv-host).
type SRV struct {
	Name                   string // _service._tcp.domain
	Target                 string
	Port, Priority, Weight int
}

// StartDNSMasq starts dnsmasq answering for domain with the given TTL (seconds) on
// every record, serving hosts (lines of "ADDRESS NAME...") and srv. It skips the test
// loudly (fails under CI) when dnsmasq is not installed, waits until it answers, and
// stops it when the test ends.
func StartDNSMasq(t testing.TB, domain string, ttl int, hosts []string, srv ...SRV) *DNSMasq {
	t.Helper()
	d := &DNSMasq{t: t, Domain: domain, ttl: ttl, dir: t.TempDir(), bin: LookPath(t, "dnsmasq", "dnsmasq", "/usr/sbin/dnsmasq")}
	d.writeHosts(hosts)
	d.writeSRV(srv)
	for attempt := 0; ; attempt++ {
		d.Address = freeUDPAddr(t)
		if d.start() {
			return d
		}
		if attempt == 5 {
			t.Fatalf("dnsmasq did not start:\n%s", d.proc.Output())
		}
	}
}

// freeUDPAddr returns a 127.0.0.1:PORT whose UDP and TCP ports were free a moment ago.
func freeUDPAddr(t testing.TB) string {
	t.Helper()
	for {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		l, err := net.Listen("tcp", addr)
		pc.Close()
		if err == nil {
			l.Close()
			return addr
		}
	}
}

func (d *DNSMasq) hostsPath() string { return filepath.Join(d.dir, "hosts") }
func (d *DNSMasq) confPath() string  { return filepath.Join(d.dir, "dnsmasq.conf") }

// writeFile replaces a file whole (a reader never sees half of it).
func (d *DNSMasq) writeFile(path, text string) {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		d.t.Fatal(err)
	}
}

func (d *DNSMasq) writeHosts(lines []string) {
	d.writeFile(d.hostsPath(), strings.Join(lines, "\n")+"\n")
}

func (d *DNSMasq) writeSRV(srv []SRV) {
	var b strings.Builder
	for _, s := range srv {
		fmt.Fprintf(&b, "srv-host=%s,%s,%d,%d,%d\n", s.Name, s.Target, s.Port, s.Priority, s.Weight)
	}
	d.writeFile(d.confPath(), b.String())
}

// start runs dnsmasq on d.Address; false when it exited at once (port taken).
func (d *DNSMasq) start() bool {
	_, port, _ := net.SplitHostPort(d.Address)
	args := []string{
		"--keep-in-foreground", "--log-facility=-", "--pid-file=",
		"--conf-file=" + d.confPath(), // and not /etc/dnsmasq.conf
		"--no-resolv", "--no-hosts", "--addn-hosts=" + d.hostsPath(),
		"--local=/" + d.Domain + "/", "--local-ttl=" + strconv.Itoa(d.ttl),
		"--listen-address=127.0.0.1", "--bind-interfaces", "--port=" + port,
	}
	if os.Getuid() == 0 {
		// As root dnsmasq would become nobody, who cannot read the test's files on SIGHUP.
		args = append(args, "--user=root")
	}
	d.proc = StartProcess(d.t, "dnsmasq", d.bin, args...)
	d.loads = 0
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if d.proc.Exited() {
			return false
		}
		q := new(dns.Msg)
		q.SetQuestion("sluice-ready."+d.Domain+".", dns.TypeA)
		if _, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(q, d.Address); err == nil {
			d.loads = strings.Count(d.proc.Output(), "read "+d.hostsPath())
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.t.Fatalf("dnsmasq at %s does not answer after 20s:\n%s", d.Address, d.proc.Output())
	return false
}

// SetHosts replaces the hosts file and makes dnsmasq read it again (SIGHUP), waiting
// until it has.
func (d *DNSMasq) SetHosts(lines ...string) {
	d.t.Helper()
	d.writeHosts(lines)
	want := d.loads + 1
	if err := d.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		d.t.Fatal(err)
	}
	WaitFor(d.t, 20*time.Second, "dnsmasq to read its hosts file again", func() bool {
		return strings.Count(d.proc.Output(), "read "+d.hostsPath()) >= want
	})
	d.loads = want
}

// SetSRV replaces the SRV records. dnsmasq reads them only at start, so it restarts on
// the same address.
func (d *DNSMasq) SetSRV(srv ...SRV) {
	d.t.Helper()
	d.writeSRV(srv)
	d.Stop()
	d.Start()
}

// Stop kills dnsmasq (a DNS outage); Start brings it back on the same address.
func (d *DNSMasq) Stop() { d.proc.Kill() }

// Start starts dnsmasq again on the same address after Stop.
func (d *DNSMasq) Start() {
	d.t.Helper()
	for attempt := 0; !d.start(); attempt++ {
		if attempt == 20 {
			d.t.Fatalf("dnsmasq could not start again on %s:\n%s", d.Address, d.proc.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
