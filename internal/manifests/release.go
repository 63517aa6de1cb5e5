package manifests

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
)

// chartRelease is what differs between the chart in the repository and the one a release
// publishes: the chart's version, and the image it installs (appVersion is the image's tag).
type chartRelease struct {
	version, repository, tag string
	prerelease               bool
}

// devChart is the chart as checked in: the image `make image` names, a version before any
// release.
var devChart = chartRelease{
	version:    ChartVersion,
	repository: strings.Split(Image, ":")[0],
	tag:        strings.Split(Image, ":")[1],
	prerelease: true,
}

// ReleaseChartFiles renders the chart a release publishes from its tag (v1.2.3) and the
// repository it pushed the image to: version and appVersion 1.2.3, the image
// repository:1.2.3, as the release tags it. A tag that is not vMAJOR.MINOR.PATCH with an
// optional pre-release is refused: Helm needs SemVer, and the image is pushed only for those.
func ReleaseChartFiles(tag, repository string) (map[string][]byte, error) {
	r, err := releaseOf(tag, repository)
	if err != nil {
		return nil, err
	}
	return chartFiles(r)
}

func releaseOf(tag, repository string) (chartRelease, error) {
	v, err := version.ParseSemantic(strings.TrimPrefix(tag, "v"))
	if err != nil || !strings.HasPrefix(tag, "v") || v.BuildMetadata() != "" {
		return chartRelease{}, fmt.Errorf("release %q: want a version tag vMAJOR.MINOR.PATCH[-PRERELEASE]", tag)
	}
	name := repository[strings.LastIndex(repository, "/")+1:]
	if !strings.Contains(repository, "/") || strings.Contains(repository, "@") || strings.Contains(name, ":") {
		return chartRelease{}, fmt.Errorf("image repository %q: want registry/owner/name, without a tag or digest", repository)
	}
	return chartRelease{version: v.String(), repository: repository, tag: v.String(), prerelease: v.PreRelease() != ""}, nil
}

// WriteReleaseChart writes ReleaseChartFiles to dir.
func WriteReleaseChart(dir, tag, repository string) error {
	files, err := ReleaseChartFiles(tag, repository)
	if err != nil {
		return err
	}
	return writeFiles(dir, files)
}
