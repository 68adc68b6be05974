module github.com/opendms/dms/services

go 1.26.8

require github.com/opendms/dms/gen v0.0.0

require github.com/stretchr/testify v1.12.1 // indirect

replace github.com/opendms/dms/gen => ../gen
