// Package rangeread is what the HTTP drivers (s3store, gcsstore,
// azblobstore) share in answering objstore.Store.Get: a read that covers no
// byte of the object, the object size a ranged answer carries, the check of
// a whole body against the MD5 the service keeps, and the classification of
// errors that cut a body short. What each service's
// errors mean stays in its driver, which passes it in.
package rangeread
