module github.com/certportal/certportal/deploy/devvault

go 1.26
