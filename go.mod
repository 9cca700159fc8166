module github.com/certportal/certportal

go 1.26
