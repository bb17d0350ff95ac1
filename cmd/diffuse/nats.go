package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/diffuse-go/diffuse/server"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// natsFlags select the job queue: in process (default), a NATS server
// embedded in this process, or an external NATS cluster.
type natsFlags struct {
	url, listen, store, token string
}

func (f *natsFlags) register(fs *flag.FlagSet, embed bool) {
	usage := "NATS server URL whose JetStream queues the jobs"
	if embed {
		usage += ` ("embedded": run one in this process; "": an in-process queue)`
	}
	fs.StringVar(&f.url, "nats", "", usage)
	fs.StringVar(&f.token, "nats-token", "", "NATS auth token (required to listen beyond loopback)")
	if embed {
		fs.StringVar(&f.listen, "nats-listen", "127.0.0.1:4222", "address of the embedded NATS server, for workers on other machines")
		fs.StringVar(&f.store, "nats-store", "", "JetStream storage folder of the embedded server (default: the user cache folder)")
	}
}

// embedded starts the in-process NATS server with JetStream on the
// configured address and store.
func (f *natsFlags) embedded() (*natsserver.Server, error) {
	host, port, err := net.SplitHostPort(f.listen)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: %w", f.listen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: bad port", f.listen)
	}
	if !isLoopback(host) && f.token == "" {
		return nil, fmt.Errorf("--nats-listen %s exposes the queue beyond this machine; give --nats-token", f.listen)
	}
	store := f.store
	if store == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("no --nats-store and no cache folder: %w", err)
		}
		store = filepath.Join(dir, "diffuse", "nats")
	}
	ns, err := natsserver.NewServer(&natsserver.Options{Host: host, Port: p, JetStream: true, StoreDir: store,
		Authorization: f.token, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded NATS did not start in 15 s")
	}
	return ns, nil
}

// connect opens the NATS connection (and the embedded server when asked);
// close releases both.
func (f *natsFlags) connect() (nc *nats.Conn, closeAll func(), err error) {
	url := f.url
	var ns *natsserver.Server
	if url == "embedded" {
		if ns, err = f.embedded(); err != nil {
			return nil, nil, err
		}
		url = ns.ClientURL()
	}
	var opts []nats.Option
	if f.token != "" {
		opts = append(opts, nats.Token(f.token))
	}
	opts = append(opts, nats.Name("diffuse"), nats.MaxReconnects(-1))
	nc, err = nats.Connect(url, opts...)
	if err != nil {
		if ns != nil {
			ns.Shutdown()
		}
		return nil, nil, fmt.Errorf("NATS %s: %w", url, err)
	}
	return nc, func() {
		nc.Drain()
		if ns != nil {
			ns.Shutdown()
		}
	}, nil
}

// runWorker is diffuse worker: it takes jobs from the JetStream queue and
// runs them on this machine's model.
func runWorker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	var nf natsFlags
	nf.register(fs, false)
	model := fs.String("m", "", "model for jobs that name none (path, or a name in --models-dir)")
	modelsDir := fs.String("models-dir", "", "folder of the models jobs may name")
	loraDir := fs.String("lora-dir", "", "folder of LoRAs")
	controlDir := fs.String("controlnet-dir", "", "folder of ControlNet models")
	vaeDir := fs.String("vae-dir", "", "folder of the VAEs jobs may name (sd_vae)")
	name := fs.String("name", "", "worker name in logs (default: host-pid)")
	var comps multiFlag
	fs.Var(&comps, "component", "NAME=PATH: a component SD3/FLUX files lack, as serve takes it (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if nf.url == "" || nf.url == "embedded" {
		return errors.New("worker: give the server's queue with --nats nats://HOST:4222")
	}
	if *model == "" && *modelsDir == "" {
		return errors.New("worker: give a model (-m) or a folder of models (--models-dir)")
	}
	sf := serveFlags{logLevel: "info", logFormat: "text"}
	log, _ := sf.logger(os.Stderr)
	opt, err := envOptions(os.Getenv, systemMemory())
	if err != nil {
		return err
	}
	if err := componentOptions(&opt, comps); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	nc, closeAll, err := nf.connect()
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer closeAll()
	cfg := server.Config{Model: *model, ModelsDir: *modelsDir, LoRADir: *loraDir, ControlNetDir: *controlDir, VAEDir: *vaeDir,
		Logger: log, Options: opt}
	return server.RunWorker(ctx, cfg, nc, *name)
}
