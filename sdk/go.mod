module github.com/otter-ota/otter/sdk

go 1.26.8
