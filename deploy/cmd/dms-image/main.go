// Command dms-image writes the DMS container image without a Docker
// daemon: `make image` builds static dmsd (and dmsctl) and runs it.
//
//	dms-image -dmsd PATH [-dmsctl PATH] -version V -revision COMMIT -created RFC3339 -tag dms:V -tar OUT.tar [-oci DIR]
//
// -tar is a tarball for `docker load` / `podman load`; -oci an OCI image
// layout (skopeo copy oci:DIR ..., crane push --index, containerd import).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/opendms/dms/deploy/image"
)

func main() {
	dmsd := flag.String("dmsd", "", "static dmsd binary (required)")
	dmsctl := flag.String("dmsctl", "", "static dmsctl binary; empty leaves it out")
	version := flag.String("version", "dev", "image version label")
	revision := flag.String("revision", "", "commit the binaries were built from")
	created := flag.String("created", "1970-01-01T00:00:00Z", "time of every file and of the image (RFC 3339; the commit's time keeps builds reproducible)")
	tag := flag.String("tag", "dms:dev", "reference recorded in the tarball and the layout")
	tarPath := flag.String("tar", "", "write a docker/podman-loadable tarball here")
	ociDir := flag.String("oci", "", "write an OCI image layout into this directory (replaced)")
	flag.Parse()
	if *dmsd == "" || (*tarPath == "" && *ociDir == "") {
		fmt.Fprintln(os.Stderr, "dms-image: -dmsd and one of -tar, -oci are required")
		os.Exit(2)
	}
	at, err := time.Parse(time.RFC3339, *created)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dms-image: -created:", err)
		os.Exit(2)
	}
	bins := map[string]string{"dmsd": *dmsd}
	if *dmsctl != "" {
		bins["dmsctl"] = *dmsctl
	}
	img, err := image.Build(image.Inputs{Binaries: bins, Version: *version, Revision: *revision, Created: at})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dms-image:", err)
		os.Exit(1)
	}
	if *tarPath != "" {
		if err := image.WriteTarball(*tarPath, *tag, img); err != nil {
			fmt.Fprintln(os.Stderr, "dms-image:", err)
			os.Exit(1)
		}
	}
	if *ociDir != "" {
		if err := image.WriteLayout(*ociDir, *tag, img); err != nil {
			fmt.Fprintln(os.Stderr, "dms-image:", err)
			os.Exit(1)
		}
	}
	digest, _ := img.Digest()
	fmt.Printf("%s %s\n", *tag, digest)
}
