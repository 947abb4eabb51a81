# The container target. The base image is built locally by pytest-vmcontainer
# (no registry): Debian 12, the same suite and apt sources as the VM's box.
FROM pytest-vmcontainer/debian:bookworm

# The same provisioning source as the Vagrantfile.
COPY fixtures/ /tmp/provision/
RUN sh /tmp/provision/provision.sh && rm -rf /tmp/provision

EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
