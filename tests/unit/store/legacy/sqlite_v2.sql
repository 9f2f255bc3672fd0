BEGIN TRANSACTION;
CREATE TABLE audit (
	seq INTEGER NOT NULL, 
	request_id VARCHAR(63) NOT NULL, 
	at DATETIME NOT NULL, 
	actor VARCHAR(255) NOT NULL, 
	reason TEXT NOT NULL, 
	PRIMARY KEY (seq)
);
CREATE TABLE clusters (
	name VARCHAR(255) NOT NULL, 
	spec TEXT NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "clusters" VALUES('prod','{"name":"prod","sets":[{"name":"workers","size":2}]}','2026-12-06 03:09:42.937427');
CREATE TABLE events (
	seq INTEGER NOT NULL, 
	request_id VARCHAR(63) NOT NULL, 
	at DATETIME NOT NULL, 
	message TEXT NOT NULL, 
	PRIMARY KEY (seq), 
	FOREIGN KEY(request_id) REFERENCES requests (id) ON DELETE CASCADE
);
INSERT INTO "events" VALUES(1,'legacy-0','2026-12-06 03:09:42.928623','request created');
INSERT INTO "events" VALUES(2,'legacy-1','2026-12-06 03:09:42.933270','request created');
INSERT INTO "events" VALUES(3,'legacy-2','2026-12-06 03:09:42.934696','request created');
INSERT INTO "events" VALUES(4,'legacy-2','2026-12-06 03:09:42.936155','deletion requested (was pending)');
CREATE TABLE request_labels (
	request_id VARCHAR(63) NOT NULL, 
	"key" VARCHAR(255) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (request_id, "key"), 
	FOREIGN KEY(request_id) REFERENCES requests (id) ON DELETE CASCADE
);
INSERT INTO "request_labels" VALUES('legacy-0','role','worker');
INSERT INTO "request_labels" VALUES('legacy-0','n','0');
INSERT INTO "request_labels" VALUES('legacy-1','role','worker');
INSERT INTO "request_labels" VALUES('legacy-1','n','1');
INSERT INTO "request_labels" VALUES('legacy-2','role','worker');
INSERT INTO "request_labels" VALUES('legacy-2','n','2');
CREATE TABLE request_sets (
	name VARCHAR(255) NOT NULL, 
	document TEXT NOT NULL, 
	machine_config TEXT NOT NULL, 
	join_api_url TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	version INTEGER NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "request_sets" VALUES('pool','{"deleting":false,"fingerprint":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff","join_options":{"mode":"documents"},"kind":"MachineRequestSet","machine_count":2,"template":{"arch":"amd64","extensions":[],"id":"legacy-9","kernel_args":[],"labels":{"n":"9","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}}','fernet:gAAAAABrFNH2spexZ6jlxLccqMnMpLjK4B2bEob126t1WTK0QKSCZKK2B4eTRdIUx93Y5n_dVE6FP1Ui6jaBS6gT9ZPvw66ZL67wSV3rDt3SnkNfXIWQh9k=','fernet:gAAAAABrFNH29wF0QQ56eFXE32S55ONXkGXycmyl7Kj2nDK6qFfZrBlZBs7fY61PX8Yk5s9T9eG_HDurphLb_m6mUb-juN0Mqor1_am0k_qeI1bqmn_dpBkAUt1qIQxeKt9GkfyxfkrT','2026-02-01 00:00:00.000000','2026-02-01 00:00:00.000000',1);
CREATE TABLE requests (
	id VARCHAR(63) NOT NULL, 
	provider VARCHAR(255) NOT NULL, 
	stage VARCHAR(32) NOT NULL, 
	body TEXT NOT NULL, 
	fingerprint VARCHAR(64) NOT NULL, 
	machine_config TEXT NOT NULL, 
	join_api_url TEXT, 
	join_options TEXT, 
	step_index INTEGER NOT NULL, 
	step_name VARCHAR(255), 
	state TEXT NOT NULL, 
	error TEXT, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME, 
	step_started_at DATETIME, 
	infra_id VARCHAR(255), 
	machine_uuid VARCHAR(64), 
	addresses TEXT NOT NULL, 
	marked_for_deletion BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	version INTEGER NOT NULL, 
	lease_owner VARCHAR(255), 
	lease_until DATETIME, 
	PRIMARY KEY (id)
);
INSERT INTO "requests" VALUES('legacy-0','fake','pending','{"arch":"amd64","extensions":[],"id":"legacy-0","kernel_args":[],"labels":{"n":"0","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}','8c44736991e820031758f8b8f4a86bf4182036382507bdee53e7639f66f45cad','fernet:gAAAAABrFNH2dgiGrrLw5KFTl-snooqoE95hv1IDUrzoGRbRhMZiWD4l8zbqnvLd03uxjFZJlJJs8uy_Y8_cVgVJ40OSNIuSJRryMItohn98cVTJ1JaHIwbdyrhOPwBluPHp8IgVEHcM','fernet:gAAAAABrFNH207tT7k_HJnfn4K30Kv2Jzqs6JQ8F6j36s5kwd9iE4xlEMvV1OaHKXfry3V9o0WKUHk4i9PO6URN-OGQb1MbAfNsMKhW85nitkA5YP-lXIsHDbIbxg5hYLUwNiX7faoQj','{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}',0,NULL,'{}',NULL,0,NULL,NULL,NULL,NULL,'[]',0,'2026-12-06 03:09:42.928623','2026-12-06 03:09:42.928623',1,NULL,NULL);
INSERT INTO "requests" VALUES('legacy-1','fake','pending','{"arch":"amd64","extensions":[],"id":"legacy-1","kernel_args":[],"labels":{"n":"1","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}','f06edfb690ee870f3b7c018d7187b1c1e7162c02aa063f508bc733f7e8b8e8f4','fernet:gAAAAABrFNH2iPrvQ0HGHttou3rW9HAgDSTqUWrejeyg2nQ4EqQzFNWQYKNFEfawulwxXC_xv0dMyLJAQOxdfx-9PMdtm8scByOb5pEXAzRa-8XqwN0ahDrJ3y9AvLw_YLt5-kRiwnAV','fernet:gAAAAABrFNH2IIWvyyEHYn5KZopZjrqfYFTzavrHWO9A65Cp4NaN_snxzuWmMj4T38Ktao3EHuUPuSqsNEN9VzzCnf1UscSjRGdydfmjBTferfmpjEnkmaCTAFR3vc-iHSXDX5UlCMFp','{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}',0,NULL,'{}',NULL,0,NULL,NULL,NULL,NULL,'[]',0,'2026-12-06 03:09:42.933270','2026-12-06 03:09:42.933270',1,NULL,NULL);
INSERT INTO "requests" VALUES('legacy-2','fake','deprovisioning','{"arch":"amd64","extensions":[],"id":"legacy-2","kernel_args":[],"labels":{"n":"2","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}','2854517a1480c82df2d325817445f832be72cd777a9f14c044c46b93ecf7a135','fernet:gAAAAABrFNH2CMC9KkwdfXrPEQUDUCKeRAEnhcaHn8Q670NTiBRVeUhejD9nrG83cvfAUiZ4kjabX31ne6F8m-0EMyVNhBNf2ABv0IT8e7cRgA8yrDPTK8YY3v-NVQpsVJsflRJE_RS_','fernet:gAAAAABrFNH289wR-g-jJvLBhEBx2I5QDbpW64mPLvwhxll6dG0xP-PtWCyks--VpJXmBXBwhpqIZYvbKlau-hrR6pdVIgmHzKs3-YqwCS80NVt4ku5DCKqETL14LWXWmyJAo19banJj','{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}',0,NULL,'{}',NULL,0,NULL,NULL,NULL,NULL,'[]',0,'2026-12-06 03:09:42.934696','2026-12-06 03:09:42.936155',2,NULL,NULL);
CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	applied_at DATETIME NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO "schema_version" VALUES(1,'initial schema','2026-12-06 03:09:42.917913');
INSERT INTO "schema_version" VALUES(2,'request sets table','2026-12-06 03:09:42.917913');
CREATE INDEX ix_requests_stage ON requests (stage);
CREATE INDEX ix_requests_provider ON requests (provider);
CREATE INDEX ix_request_labels_key_value ON request_labels ("key", value);
CREATE INDEX ix_events_request_id ON events (request_id);
COMMIT;
