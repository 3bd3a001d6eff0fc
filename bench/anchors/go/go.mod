module portway.bench/anchors

go 1.19
